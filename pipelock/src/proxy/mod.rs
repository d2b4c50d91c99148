//! Front doors: the listeners that turn traffic into things to inspect.

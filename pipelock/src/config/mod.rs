//! Configuration: the YAML format of the reference Pipelock, loaded strictly.

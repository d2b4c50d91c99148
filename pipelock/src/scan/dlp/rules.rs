//! The built-in DLP rules: credential and identifier formats, each with a stable id, a
//! severity, a regex, the cheap trigger that decides whether the regex runs at all, and an
//! optional checksum validator.
//!
//! Regexes are case-sensitive where the format is (key prefixes such as `AKIA` or `ghp_`), so
//! ordinary prose does not trip them; assignment-style rules fold case.

use crate::config::Severity::{self, Critical, High, Low, Medium};

/// What must be present in the input before a rule's regex is run.
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    /// Any of these literals, case-sensitive.
    Exact(&'static [&'static str]),
    /// Any of these literals, case-sensitive, in text with a run of at least 20 token
    /// characters (`[A-Za-z0-9_-]`, see [`crate::scan::runs`]): for formats whose every match
    /// holds such a run (a prefix and a long body), which most text lacks, so their literals
    /// are not even searched for.
    Token(&'static [&'static str]),
    /// Any of these literals, ASCII case-insensitive.
    Folded(&'static [&'static str]),
    /// A run of digits, spaces and dashes holding at least 9 digits (cards, SSNs, IBANs).
    DigitRun,
    /// A run of at least 20 token characters (`[A-Za-z0-9_-]`), for formats without a prefix.
    TokenRun,
}

/// A checksum or structure check a regex match must also pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Luhn,
    Mod97,
    Ssn,
    Wif,
    /// US ABA routing number checksum (custom patterns only).
    Aba,
}

/// One built-in rule.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinRule {
    /// Stable id (the finding's rule id is `dlp.<id>`).
    pub id: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    pub regex: &'static str,
    pub trigger: Trigger,
    pub check: Option<Check>,
}

const fn rule(
    id: &'static str,
    name: &'static str,
    severity: Severity,
    regex: &'static str,
    trigger: Trigger,
) -> BuiltinRule {
    BuiltinRule {
        id,
        name,
        severity,
        regex,
        trigger,
        check: None,
    }
}

const fn checked(mut r: BuiltinRule, check: Check) -> BuiltinRule {
    r.check = Some(check);
    r
}

use Trigger::{DigitRun, Exact, Folded, Token, TokenRun};

/// Every built-in rule.
#[rustfmt::skip]
pub const BUILTIN_RULES: &[BuiltinRule] = &[
    // Cloud providers.
    rule("aws_access_key_id", "AWS Access Key ID", Critical,
        r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|A3T[A-Z0-9])[A-Z0-9]{16}\b",
        Token(&["AKIA", "ASIA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "A3T"])),
    rule("aws_secret_access_key", "AWS Secret Access Key", Critical,
        r#"(?i)(?:aws_secret_access_key|aws_secret_key|secretaccesskey)["']?\s*[:=]\s*["']?[A-Za-z0-9/+=]{40}\b"#,
        Folded(&["aws_secret", "secretaccesskey"])),
    rule("gcp_service_account_key", "GCP Service Account Key", Critical,
        r#""type"\s*:\s*"service_account""#, Exact(&["service_account"])),
    rule("google_api_key", "Google API Key", High, r"\bAIza[0-9A-Za-z_-]{35}", Token(&["AIza"])),
    rule("google_oauth_client_secret", "Google OAuth Client Secret", Critical,
        r"\bGOCSPX-[A-Za-z0-9_-]{28}", Token(&["GOCSPX-"])),
    rule("google_oauth_token", "Google OAuth Access Token", Critical,
        r"\bya29\.[0-9A-Za-z_-]{20,}", Token(&["ya29."])),
    rule("google_oauth_client_id", "Google OAuth Client ID", Medium,
        r"\b\d{6,}-[a-z0-9]{32}\.apps\.googleusercontent\.com\b",
        Token(&[".apps.googleusercontent.com"])),
    rule("azure_storage_connection_string", "Azure Storage Connection String", Critical,
        r"(?i)DefaultEndpointsProtocol=https?;AccountName=[^;\s]+;AccountKey=[A-Za-z0-9+/=]{40,}",
        Folded(&["accountkey="])),
    rule("azure_sas_token", "Azure Shared Access Signature", High,
        r"[?&]sv=\d{4}-\d{2}-\d{2}&[^\s]*?sig=[A-Za-z0-9%+/=]{30,}", Exact(&["sig="])),
    rule("digitalocean_token", "DigitalOcean Token", Critical,
        r"\bdo[opr]_v1_[a-f0-9]{64}\b", Token(&["dop_v1_", "doo_v1_", "dor_v1_"])),
    // LLM and AI providers.
    rule("openai_api_key", "OpenAI API Key", Critical,
        r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}", Token(&["sk-proj-", "sk-svcacct-", "sk-admin-"])),
    rule("openai_legacy_api_key", "OpenAI API Key (legacy)", Critical,
        r"\bsk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}\b|\bsk-[A-Za-z0-9]{48}\b", Token(&["sk-"])),
    rule("anthropic_api_key", "Anthropic API Key", Critical,
        r"\bsk-ant-[A-Za-z0-9_-]{20,}", Token(&["sk-ant-"])),
    rule("huggingface_token", "Hugging Face Token", Critical, r"\bhf_[A-Za-z0-9]{34,}\b", Token(&["hf_"])),
    rule("cohere_api_key", "Cohere API Key", Critical,
        r#"(?i)\bco(?:here)?[_-]?(?:api[_-]?)?key["']?\s*[:=]\s*["']?[A-Za-z0-9]{40}\b"#,
        Folded(&["cohere", "co_api", "co-api"])),
    rule("groq_api_key", "Groq API Key", Critical, r"\bgsk_[A-Za-z0-9]{48,}\b", Token(&["gsk_"])),
    rule("xai_api_key", "xAI API Key", Critical, r"\bxai-[A-Za-z0-9]{70,}\b", Token(&["xai-"])),
    rule("replicate_api_token", "Replicate API Token", Critical, r"\br8_[A-Za-z0-9]{37,}\b", Token(&["r8_"])),
    rule("fireworks_api_key", "Fireworks API Key", Critical, r"\bfw_[A-Za-z0-9]{24,}\b", Token(&["fw_"])),
    rule("perplexity_api_key", "Perplexity API Key", Critical, r"\bpplx-[A-Za-z0-9]{40,}\b", Token(&["pplx-"])),
    rule("pinecone_api_key", "Pinecone API Key", Critical, r"\bpcsk_[A-Za-z0-9_]{40,}\b", Token(&["pcsk_"])),
    // Source hosting and package registries.
    rule("github_classic_token", "GitHub Personal Access Token (classic)", Critical,
        r"\bgh[po]_[A-Za-z0-9]{36,}\b", Token(&["ghp_", "gho_"])),
    rule("github_fine_grained_pat", "GitHub Fine-Grained Personal Access Token", Critical,
        r"\bgithub_pat_[A-Za-z0-9_]{60,}\b", Token(&["github_pat_"])),
    rule("github_app_token", "GitHub App Token", Critical,
        r"\bgh[usr]_[A-Za-z0-9]{36,}\b", Token(&["ghu_", "ghs_", "ghr_"])),
    rule("gitlab_token", "GitLab Token", Critical,
        r"\bgl(?:pat|dt|rt|ptt)-[A-Za-z0-9_-]{20,}", Token(&["glpat-", "gldt-", "glrt-", "glptt-"])),
    rule("npm_token", "npm Access Token", Critical, r"\bnpm_[A-Za-z0-9]{36}\b", Token(&["npm_"])),
    rule("pypi_token", "PyPI API Token", Critical,
        r"\bpypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}", Token(&["pypi-AgEIcHlwaS5vcmc"])),
    rule("vault_token", "HashiCorp Vault Token", Critical, r"\bhv[sb]\.[A-Za-z0-9_-]{24,}", Token(&["hvs.", "hvb."])),
    // Chat, payments, email and SaaS.
    rule("slack_token", "Slack Token", Critical, r"\bxox[abposr]-[A-Za-z0-9-]{10,}", Exact(&["xox"])),
    rule("slack_app_token", "Slack App Token", Critical, r"\bxapp-\d-[A-Z0-9]+-\d+-[a-f0-9]+\b", Exact(&["xapp-"])),
    rule("slack_webhook_url", "Slack Webhook URL", High,
        r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_-]{20,}", Exact(&["hooks.slack.com/"])),
    rule("discord_bot_token", "Discord Bot Token", Critical,
        r"\b[MNO][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}\b", TokenRun),
    rule("discord_webhook_url", "Discord Webhook URL", High,
        r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_-]{60,}",
        Token(&["/api/webhooks/"])),
    rule("telegram_bot_token", "Telegram Bot Token", Critical, r"\b\d{8,10}:AA[A-Za-z0-9_-]{33}\b", Token(&[":AA"])),
    rule("stripe_secret_key", "Stripe Secret Key", Critical,
        r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{20,}\b", Token(&["sk_live_", "sk_test_", "rk_live_", "rk_test_"])),
    rule("stripe_webhook_secret", "Stripe Webhook Secret", Critical, r"\bwhsec_[A-Za-z0-9]{20,}\b", Token(&["whsec_"])),
    rule("square_token", "Square Access Token", Critical,
        r"\bsq0(?:atp|csp)-[A-Za-z0-9_-]{22,43}\b", Token(&["sq0atp-", "sq0csp-"])),
    rule("shopify_token", "Shopify Access Token", Critical,
        r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b", Token(&["shpat_", "shpca_", "shppa_", "shpss_"])),
    rule("twilio_api_key", "Twilio API Key", High, r"\bSK[0-9a-f]{32}\b", TokenRun),
    rule("sendgrid_api_key", "SendGrid API Key", Critical,
        r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\b", Token(&["SG."])),
    rule("mailgun_api_key", "Mailgun API Key", High, r"\bkey-[0-9a-zA-Z]{32}\b", Token(&["key-"])),
    rule("new_relic_api_key", "New Relic API Key", Critical, r"\bNRAK-[A-Z0-9]{27}\b", Token(&["NRAK-"])),
    rule("databricks_token", "Databricks Token", Critical, r"\bdapi[a-f0-9]{32}\b", Token(&["dapi"])),
    rule("linear_api_key", "Linear API Key", High, r"\blin_api_[A-Za-z0-9]{40}\b", Token(&["lin_api_"])),
    rule("notion_token", "Notion Integration Token", High, r"\bntn_[A-Za-z0-9]{40,}\b", Token(&["ntn_"])),
    rule("sentry_token", "Sentry Auth Token", High, r"\bsntry[su]_[A-Za-z0-9+/=_-]{40,}", Exact(&["sntrys_", "sntryu_"])),
    // Keys and tokens by structure.
    rule("jwt", "JSON Web Token", High,
        r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}", Exact(&["eyJ"])),
    rule("pem_private_key", "PEM Private Key", Critical,
        r"-----BEGIN (?:RSA |EC |DSA |ENCRYPTED )?PRIVATE KEY-----", Exact(&["-----BEGIN "])),
    rule("openssh_private_key", "OpenSSH Private Key", Critical,
        r"-----BEGIN OPENSSH PRIVATE KEY-----", Exact(&["-----BEGIN "])),
    rule("pgp_private_key", "PGP Private Key Block", Critical,
        r"-----BEGIN PGP PRIVATE KEY BLOCK-----", Exact(&["-----BEGIN "])),
    rule("age_secret_key", "age Secret Key", Critical,
        r"\bAGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}\b", Token(&["AGE-SECRET-KEY-1"])),
    // Credentials in text.
    rule("database_url_password", "Database URL with Password", Critical,
        r"(?i)\b(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver|clickhouse)://[^\s:/@]+:[^\s@/]{3,}@[^\s/]+",
        Folded(&["postgres://", "postgresql://", "mysql://", "mariadb://", "mongodb://", "mongodb+srv://",
                 "redis://", "rediss://", "amqp://", "amqps://", "mssql://", "sqlserver://", "clickhouse://"])),
    rule("password_assignment", "Password or Secret Assignment", Medium,
        r#"(?i)\b(?:password|passwd|pwd|secret|client[_-]?secret|api[_-]?key|access[_-]?token|auth[_-]?token)["']?\s*[:=]\s*["']?[^\s"'&,;$<{*]{6,}"#,
        Folded(&["password", "passwd", "pwd", "secret", "api_key", "api-key", "apikey", "access_token",
                 "access-token", "accesstoken", "auth_token", "auth-token", "authtoken"])),
    rule("env_var_secret", "Secret Environment Variable Assignment", High,
        r#"\b[A-Z][A-Z0-9_]*(?:SECRET|PASSWORD|PASSWD|TOKEN|API_KEY)\s*=\s*["']?[^\s"']{8,}"#,
        Exact(&["SECRET", "PASSWORD", "PASSWD", "TOKEN", "API_KEY"])),
    // Personal and financial identifiers.
    checked(rule("credit_card", "Credit Card Number", Medium, r"\b\d(?:[ -]?\d){12,18}\b", DigitRun), Check::Luhn),
    checked(rule("iban", "IBAN", Medium, r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b", DigitRun), Check::Mod97),
    checked(rule("us_ssn", "US Social Security Number", Low, r"\b\d{3}-\d{2}-\d{4}\b", DigitRun), Check::Ssn),
    // Crypto wallets.
    checked(rule("bitcoin_wif_private_key", "Bitcoin WIF Private Key", Critical,
        r"\b[5KL][1-9A-HJ-NP-Za-km-z]{50,51}\b", TokenRun), Check::Wif),
    rule("extended_private_key", "BIP-32 Extended Private Key", Critical,
        r"\b[xyzt]prv[1-9A-HJ-NP-Za-km-z]{107,108}\b", Token(&["xprv", "yprv", "zprv", "tprv"])),
    rule("ethereum_private_key", "Ethereum Private Key", High, r"\b0x[a-fA-F0-9]{64}\b", Token(&["0x"])),
];

//! The built-in prompt-injection patterns. Each has a stable id, a severity, a regex matched
//! against lowercased text whose whitespace runs are single spaces, and keywords: the regex
//! only runs around them, so every match of a pattern must contain one of its keywords.
//! Keywords are lowercase, with single spaces between words, and at least four bytes long. A
//! keyword that starts with an ASCII letter is only looked for at word starts (see
//! [`crate::scan::keywords`]), so every match must hold one there.

use crate::config::Severity::{self, Critical, High, Medium};

/// One built-in pattern.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinPattern {
    /// Stable id (the finding's rule id is `injection.<id>`).
    pub id: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    pub regex: &'static str,
    pub keywords: &'static [&'static str],
    /// Matched on the lowercased text with its line breaks kept (the regex anchors on lines),
    /// instead of the view whose whitespace runs are single spaces.
    pub lines: bool,
}

const fn pattern(
    id: &'static str,
    name: &'static str,
    severity: Severity,
    regex: &'static str,
    keywords: &'static [&'static str],
) -> BuiltinPattern {
    BuiltinPattern {
        id,
        name,
        severity,
        regex,
        keywords,
        lines: false,
    }
}

const fn line_pattern(
    id: &'static str,
    name: &'static str,
    severity: Severity,
    regex: &'static str,
    keywords: &'static [&'static str],
) -> BuiltinPattern {
    let mut p = pattern(id, name, severity, regex, keywords);
    p.lines = true;
    p
}

/// Every built-in pattern.
#[rustfmt::skip]
pub const BUILTIN_PATTERNS: &[BuiltinPattern] = &[
    pattern("instruction_override", "Instruction Override", High,
        r"\b(?:ignore|disregard|forget|skip|override|bypass|abandon)\s+(?:(?:all|any|every|the|your|these|those|of|my)\s+){0,3}(?:previous|prior|above|earlier|preceding|original|system|initial|former)\s+(?:instructions?|prompts?|rules|directions|directives|guidelines|context|messages|commands)",
        &["ignore", "disregard", "forget", "skip", "override", "bypass", "abandon"]),
    pattern("instruction_dismissal", "Instruction Dismissal", High,
        r"\b(?:do\s+not|don'?t|never|stop)\s+(?:follow(?:ing)?|obey(?:ing)?|listen(?:ing)?\s+to)\s+(?:your|the|any)\s+(?:(?:previous|prior|original|system|developer)\s+)?(?:instructions|rules|guidelines|prompt)",
        &["follow", "obey", "listen"]),
    pattern("instruction_downgrade", "Instruction Downgrade", High,
        r"\b(?:previous|prior|above|system|original)\s+(?:instructions|rules|prompt|guidelines)\s+(?:are|were|is|have\s+been)\s+(?:now\s+)?(?:void|null|obsolete|outdated|cancell?ed|revoked|no\s+longer\s+valid|deprecated|superseded)",
        &["void", "null", "obsolete", "outdated", "cancel", "revoked", "no longer valid", "deprecated", "superseded"]),
    pattern("new_instructions", "New Instructions", Medium,
        r"\b(?:new|updated|revised|real|actual|true)\s+(?:instructions|directives|system\s+prompt|orders)\s*(?::|-|follow)",
        &["instructions", "directives", "system prompt", "orders"]),
    line_pattern("system_override", "System Role Override", High,
        // One required inner literal (`system`), so the regex engine can search for it first.
        r"(?m)^[ \t#<\[]*system(?:[ \t]+(?:message|prompt))?[\]>]?[ \t]*[:>]",
        &["system"]),
    pattern("role_override", "Role Override", High,
        r"\byou\s+are\s+(?:now|no\s+longer)\s+(?:a\s+|an\s+|in\s+)?(?:dan\b|evil|unrestricted|jailbroken|unfiltered|uncensored|unbound|developer\s+mode|god\s+mode|(?:an?\s+)?ai\s+(?:without|with\s+no)|bound\s+by|restricted|an?\s+assistant\s+(?:without|with\s+no))",
        &["you are now", "you are no longer"]),
    pattern("jailbreak_mode", "Jailbreak Mode", High,
        r"\b(?:dan\s+mode|developer\s+mode\s+(?:enabled|activated|on)|jailbreak(?:ed)?\s+mode|do\s+anything\s+now|sudo\s+mode|god\s+mode\s+(?:enabled|activated|on)|enable\s+(?:developer|dan|jailbreak)\s+mode)",
        &["dan mode", "developer mode", "jailbreak", "do anything now", "sudo mode", "god mode"]),
    pattern("role_play_impersonation", "Unrestricted Role-Play", High,
        r"\b(?:pretend|act|behave|roleplay|role-play)\s+(?:to\s+be|as\s+if\s+you\s+(?:are|were)|as|like)\s+(?:an?\s+)?(?:unrestricted|unfiltered|evil|malicious|uncensored|amoral|jailbroken)",
        &["pretend", "act as", "act like", "act to be", "behave", "roleplay", "role-play"]),
    pattern("behavior_override", "Behavior Override", Medium,
        r"\bfrom\s+now\s+on,?\s+(?:you\s+)?(?:will|must|shall|are\s+to|should|have\s+to)\b",
        &["from now on"]),
    pattern("hidden_instruction", "Hidden Instruction", High,
        r"\b(?:hidden|secret|invisible)\s+(?:instructions?|directives?|commands?|tasks?)\s*[:\-]|<!--\s*(?:ignore|system|instructions?|assistant|ai|agent)\b|\[(?:hidden|secret)\s+(?:instruction|prompt)\]",
        &["hidden", "secret", "invisible", "<!--"]),
    pattern("encoded_payload", "Encoded Payload Execution", High,
        r"\b(?:decode|base64\s+-d|base64\s+--decode)\b[^\n]{0,60}\b(?:execute|run|eval|follow|obey)\b|eval\s*\(\s*atob\s*\(",
        &["decode", "base64", "atob"]),
    pattern("tool_invocation", "Forced Tool Invocation", Medium,
        r"\byou\s+(?:must|should|need\s+to|are\s+required\s+to|have\s+to)\s+(?:now\s+|immediately\s+|first\s+)?(?:call|invoke|use|run|execute|trigger)\s+(?:the\s+)?[\w\-.]+\s+(?:tool|function|command|action)",
        &["you must", "you should", "you need to", "you are required to", "you have to"]),
    pattern("authority_escalation", "Authority Escalation", Medium,
        r"\b(?:i\s+am|this\s+is)\s+(?:your|the)\s+(?:developer|administrator|admin|creator|owner|system\s+operator|openai|anthropic)\b|\b(?:admin|developer|root|sudo)\s+(?:override|access\s+granted|privileges?\s+granted|authori[sz]ation\s+granted)",
        &["i am your", "i am the", "this is your", "this is the", "override", "granted"]),
    pattern("priority_override", "Priority Override", Medium,
        r"\b(?:this|these|the\s+following)\s+(?:instructions?|messages?|directives?)\s+(?:takes?|has|have|carry)\s+(?:the\s+)?(?:highest\s+)?(?:priority|precedence)|\b(?:highest|top|absolute)\s+priority\s+(?:instructions?|directives?|task|override)",
        &["priority", "precedence"]),
    pattern("system_prompt_leak", "System Prompt Extraction", Medium,
        r"\b(?:reveal|print|show|repeat|output|display|dump|leak)\s+(?:me\s+)?(?:your|the)\s+(?:full\s+|entire\s+|complete\s+)?(?:system\s+prompt|initial\s+instructions|hidden\s+instructions|original\s+prompt|developer\s+message)",
        &["system prompt", "initial instructions", "hidden instructions", "original prompt", "developer message"]),
    pattern("credential_solicitation", "Credential Solicitation", High,
        r"\b(?:send|give|provide|share|reveal|show|tell|paste|print|output|leak|disclose|include|list)\s+(?:me\s+|us\s+)?(?:your|the|all|any)\s+(?:stored\s+)?(?:api\s*keys?|passwords?|credentials|secrets?|(?:access\s+|auth\s+)?tokens?|private\s+keys?|ssh\s+keys?|env(?:ironment)?\s+variables|\.env\b|session\s+cookies?)",
        &["api key", "apikey", "password", "credential", "secret", "token", "private key", "ssh key", "environment variable", "env variable", ".env", "cookie"]),
    pattern("credential_path_directive", "Credential Path Directive", High,
        r"\b(?:read|cat|open|upload|send|copy|exfiltrate|include|attach|print|load|fetch|post)\b[^\n]{0,60}(?:~/\.ssh|\.ssh/id_(?:rsa|ed25519|ecdsa|dsa)|\.aws/credentials|/etc/shadow|/etc/passwd|\.npmrc|\.pypirc|\.netrc|\.kube/config|\bkubeconfig|\.git-credentials|\.docker/config\.json|\bid_rsa\b|\bid_ed25519\b|\.env\b)",
        &[".ssh", ".aws", "/etc/shadow", "/etc/passwd", ".npmrc", ".pypirc", ".netrc", "kube", ".env", "id_rsa", "id_ed25519", "git-credentials", ".docker"]),
    pattern("exfiltration_directive", "Exfiltration Directive", Critical,
        r"\b(?:send|post|upload|forward|transmit|exfiltrate|leak|copy|pipe|curl)\s+(?:it|them|this|that|everything|(?:all\s+|the\s+)?(?:data|contents?|files?|results?|output|conversation|history|keys?|secrets?|credentials|tokens?))\s+(?:to|into|at)\s+(?:https?://|ftp://|[\w.+-]+@[\w-]+\.[\w.]+|(?:my|our|this|the\s+following)\s+(?:server|endpoint|webhook|url)|[\w-]+\.(?:com|net|org|io|xyz|ru|cn|top|site)\b)",
        &["send", "post", "upload", "forward", "transmit", "exfiltrate", "leak", "copy", "pipe", "curl"]),
    pattern("covert_action", "Covert Action Directive", High,
        r"\b(?:secretly|silently|quietly|covertly|stealthily|without\s+(?:telling|informing|notifying|alerting|asking)\s+(?:the\s+)?user)\b[^\n]{0,80}\b(?:execute|run|curl|wget|upload|send|post|delete|remove|download|call|exfiltrate|install|modify|transfer)\b",
        &["secretly", "silently", "quietly", "covertly", "stealthily", "without telling", "without informing", "without notifying", "without alerting", "without asking"]),
    pattern("silent_credential_handling", "Silent Credential Handling", High,
        r"\b(?:do\s+not|don'?t|never)\s+(?:mention|tell|inform|show|reveal|disclose|alert|notify|log)\s+(?:this|it|that|the\s+user|anyone|them)\b[^\n]{0,80}\b(?:keys?|passwords?|tokens?|credentials?|secrets?)\b",
        &["not mention", "t mention", "never mention", "not tell", "t tell", "never tell", "not inform", "t inform", "not show", "t show", "not reveal", "t reveal", "not disclose", "t disclose", "not alert", "t alert", "not notify", "t notify", "not log", "t log", "never log", "never reveal", "never disclose",
          "dont mention", "dont tell", "dont inform", "dont show", "dont reveal", "dont disclose", "dont alert", "dont notify", "dont log",
          "never inform", "never show", "never alert", "never notify"]),
    pattern("memory_persistence", "Memory Persistence Directive", Medium,
        r"\b(?:remember|memorize|store|save|persist|keep)\s+(?:this|these|that|the\s+following)\s+(?:instructions?\s+)?(?:for\s+(?:all\s+)?(?:future|later|every|all)|permanently|forever|across\s+(?:all\s+)?(?:sessions|conversations|chats))|\b(?:add|write|save|store)\s+(?:this|these|that|the\s+following)\s+(?:instructions?\s+)?(?:to|in|into)\s+(?:your\s+)?(?:long[-\s]term\s+)?memory",
        &["remember", "memorize", "store", "save", "persist", "keep", "memory"]),
    pattern("preference_poisoning", "Preference Poisoning", Medium,
        r"\b(?:always|from\s+now\s+on)\s+(?:recommend|prefer|suggest|endorse|promote)\s+\S+|\b(?:the\s+)?user\s+(?:prefers|wants|has\s+asked|always\s+wants)\s+(?:you\s+)?to\s+(?:always|never)\b",
        &["always recommend", "always prefer", "always suggest", "always endorse", "always promote", "on recommend", "on prefer", "on suggest", "user prefers", "user wants", "user has asked", "user always wants"]),
    pattern("model_boundary_token", "Model Boundary Token", High,
        r"<\|(?:im_start|im_end|endoftext|system|user|assistant|begin_of_text|end_of_text|start_header_id|end_header_id|eot_id)\|>|\[/?inst\]|<</?sys>>|\[/?system\]|<\|?(?:system|assistant)\|?>\s*\n",
        &["<|im_start", "<|im_end", "<|endoftext", "<|system", "<|user", "<|assistant", "<|begin_of_text", "<|end_of_text", "<|start_header_id", "<|end_header_id", "<|eot_id", "[inst]", "[/inst]", "<<sys>>", "<</sys>>", "[system]", "[/system]", "<system", "<assistant"]),
    // Non-English instruction overrides.
    pattern("override_zh", "Instruction Override (Chinese)", High,
        r"(?:忽略|无视|忽视|不要理会|忘记|忘掉|跳过)(?:掉)?(?:你)?(?:之前|以前|先前|上面|上述|前面|所有|全部|此前)(?:的)?(?:所有|全部)?(?:的)?(?:指令|指示|说明|规则|提示|命令|要求)",
        &["忽略", "无视", "忽视", "不要理会", "忘记", "忘掉", "跳过"]),
    pattern("override_ja", "Instruction Override (Japanese)", High,
        r"(?:以前|前|上記|これまで|先ほど|すべて)の(?:すべての)?(?:指示|命令|ルール|指令|プロンプト)を(?:すべて)?(?:無視|忘れ)",
        &["無視", "忘れ"]),
    pattern("override_ko", "Instruction Override (Korean)", High,
        r"(?:이전|위의|앞의|모든|기존)\s*(?:의\s*)?(?:모든\s*)?(?:지시|명령|지침|규칙|프롬프트)(?:사항)?(?:을|를|은|는)?\s*(?:모두\s*)?(?:무시|잊어)",
        &["무시", "잊어"]),
    pattern("override_es", "Instruction Override (Spanish)", High,
        r"\b(?:ignora|ignore|olvida|olvide|descarta|omite|ignorar)\s+(?:todas\s+|todos\s+)?(?:las\s+|los\s+|tus\s+)?(?:instrucciones|reglas|indicaciones|[óo]rdenes|directrices)\s+(?:anteriores|previas|de\s+arriba)",
        &["ignora", "ignore", "olvida", "olvide", "descarta", "omite"]),
    pattern("override_fr", "Instruction Override (French)", High,
        r"\b(?:ignore[rz]?|oublie[rz]?|n[ée]glige[rz]?)\s+(?:toutes\s+|tous\s+)?(?:les\s+|tes\s+|vos\s+)?(?:instructions|consignes|r[èe]gles|directives|ordres)\s+(?:pr[ée]c[ée]dentes|ant[ée]rieures|ci-dessus|d'avant)",
        &["ignore", "oublie", "néglige", "neglige"]),
    pattern("override_de", "Instruction Override (German)", High,
        r"\b(?:ignoriere|ignorieren\s+sie|vergiss|vergessen\s+sie|missachte)\s+(?:alle\s+|die\s+|deine\s+)?(?:vorherigen|bisherigen|obigen|fr(?:ü|u|ue)heren|vorigen)\s+(?:anweisungen|instruktionen|regeln|befehle|vorgaben)",
        &["ignoriere", "ignorieren", "vergiss", "vergessen", "missachte"]),
    pattern("override_ru", "Instruction Override (Russian)", High,
        r"(?:игнорируй(?:те)?|забудь(?:те)?|не\s+обращай(?:те)?\s+внимания\s+на|отбрось)\s+(?:все\s+)?(?:предыдущие|прежние|вышеуказанные|предшествующие|прошлые)\s+(?:инструкции|указания|правила|команды)",
        &["игнорир", "забуд", "не обращай", "отбрось"]),
];

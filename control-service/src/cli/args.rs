//! The command line, declared with clap (derive). One subcommand group per
//! resource; `--url`, `--token` and `--json` work on every admin command
//! and come from `TOLLGATE_URL` / `TOLLGATE_ADMIN_TOKEN` when not given.

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "tollgate",
    version,
    about = "tollgate — Tollgate control service and admin command line",
    after_help = "Every command takes --help. Times (T) are 2026-11-01, an RFC 3339 time, or Unix ms."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The control service's URL
    #[arg(long, global = true, env = "TOLLGATE_URL", default_value = "http://127.0.0.1:7070")]
    pub url: String,
    /// The admin token
    #[arg(long, global = true, env = "TOLLGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Machine-readable output (JSON)
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run the control service
    Serve(ServeArgs),
    /// Virtual keys: create, list, revoke, rotate
    #[command(subcommand, arg_required_else_help = true)]
    Keys(KeysCmd),
    /// Budgets per key, team or project
    #[command(subcommand, arg_required_else_help = true)]
    Budgets(BudgetsCmd),
    /// Spend by any dimensions, per hour or day (table, JSON or CSV)
    Spend(SpendArgs),
    /// What moved the most against the previous range of the same length
    Movers(MoversArgs),
    /// Reports
    #[command(subcommand, arg_required_else_help = true)]
    Report(ReportCmd),
    /// Budget threshold alerts, newest first, with webhook delivery status
    Alerts,
    /// Guardrail audit: which teams sent which classes of data to which provider
    Audit(AuditArgs),
    /// Why prompt caches were cold, and what it cost, per feature and prompt version
    CacheMisses(CacheMissArgs),
    /// The guardrail policy every Envoy applies: show, set from a JSON file, clear
    #[command(subcommand, arg_required_else_help = true)]
    Guardrails(GuardrailsCmd),
    /// The prompt registry: versions, labels, diffs
    #[command(subcommand, arg_required_else_help = true)]
    Prompts(PromptsCmd),
    /// Evaluations: replay a feature's captured requests to a candidate model and score it
    #[command(subcommand, arg_required_else_help = true)]
    Eval(EvalCmd),
    /// Evaluation sets captured from traffic: list, delete
    #[command(subcommand, arg_required_else_help = true)]
    EvalSets(EvalSetsCmd),
    /// The auto router: per feature, the cheapest model whose evaluation passed
    #[command(subcommand, arg_required_else_help = true)]
    Routing(RoutingCmd),
    /// JSON compliance per model, for requests that asked for JSON
    JsonCompliance,
    /// Budget increase requests
    #[command(subcommand, arg_required_else_help = true)]
    Requests(RequestsCmd),
    /// Offline: make a key and its hash, or hash a key (for static keys in the Envoy YAML)
    #[command(subcommand, arg_required_else_help = true)]
    Key(KeyCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
#[command(after_help = "Settings also come from the environment (flags win):
    TOLLGATE_ADMIN_TOKEN   admin API token (required, 16 characters or more)
    TOLLGATE_FILTER_TOKEN  token of the Envoy filters: ingest + state only (required, differs from the admin token)
    TOLLGATE_WEBHOOK_URL   where budget alerts are POSTed (optional)
    TOLLGATE_NODE_TTL_MS   an Envoy counts as active this long after its last poll (15000)
    TOLLGATE_USE_LOG_KEEP_MS how long budget use changes are kept for deltas (600000; at least 60000 and 2x the node TTL)
    TOLLGATE_STATE_PAGE    budgets per page when an Envoy's state comes in pages (5000, the most)
    TOLLGATE_FILTER_WASM   a filter .wasm to serve at GET /v1/filter.wasm (optional)")]
pub struct ServeArgs {
    /// Listen address
    #[arg(long, env = "TOLLGATE_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: String,
    /// SQLite file, or a PostgreSQL connection string (postgresql://user:pass@host/db or "host=... dbname=...")
    #[arg(long, env = "TOLLGATE_DB", default_value = "tollgate.db")]
    pub db: String,
    /// Keep guardrail audit findings this many days (purged hourly; 0 = keep forever)
    #[arg(long, env = "TOLLGATE_AUDIT_RETENTION_DAYS", default_value_t = 365)]
    pub audit_retention_days: u64,
    /// Keep requests captured for evaluations this many days (purged hourly; 0 = keep forever)
    #[arg(long, env = "TOLLGATE_CAPTURE_RETENTION_DAYS", default_value_t = 90)]
    pub capture_retention_days: u64,
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Create a key: printed once, only its hash is stored
    Create {
        #[arg(long)]
        team: String,
        #[arg(long)]
        project: String,
        #[arg(long)]
        id: Option<String>,
        /// Models (routes) the key may use, comma-separated patterns (default: all)
        #[arg(long)]
        models: Option<String>,
        /// Other projects the key may charge, comma-separated, or *
        #[arg(long)]
        projects: Option<String>,
        /// A tag copied into every usage record (repeatable)
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
    },
    /// List keys (never the keys themselves)
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Revoke a key: every Envoy refuses it within two polls
    Revoke { id: String },
    /// Replace a key: the old one stops working, the new one is printed once
    Rotate { id: String },
    /// Create keys in bulk from CSV or JSON Lines (keys moving from another
    /// gateway keep working: give their `key` or `key_hash`)
    Import {
        #[command(flatten)]
        from: ImportArgs,
        /// Write keys made for rows without a key here (mode 0600) instead of stdout
        #[arg(long)]
        made: Option<String>,
    },
}

/// Which page of a long list to show (keys and budgets alike).
#[derive(Args, Debug)]
pub struct PageArgs {
    /// At most this many
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub limit: u64,
    /// Start after this one (the 'next' a page names)
    #[arg(long)]
    pub after: Option<String>,
    /// Every one, a page at a time (with --json: one JSON object a line)
    #[arg(long, conflicts_with_all = ["after"])]
    pub all: bool,
}

/// Where an import reads from and how it sends (keys and budgets alike).
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The file (`-` for stdin)
    pub file: String,
    /// csv or jsonl (default: from the file name, else jsonl)
    #[arg(long, value_enum)]
    pub format: Option<super::import::Format>,
    /// Rows per request (each request is all or none; at most 10,000)
    #[arg(long, default_value_t = 5000)]
    pub batch: usize,
    /// Skip this many rows (to resume after a stopped import)
    #[arg(long, default_value_t = 0)]
    pub skip: usize,
}

/// Limits: --limit-usd or --limit-micros, and/or --limit-tokens.
#[derive(Args, Debug, Default)]
pub struct Limits {
    /// Limit in USD, at most 6 decimals (12.50)
    #[arg(long, conflicts_with = "limit_micros")]
    pub limit_usd: Option<String>,
    /// Limit in micro-dollars
    #[arg(long)]
    pub limit_micros: Option<u64>,
    /// Limit in tokens (input + output)
    #[arg(long)]
    pub limit_tokens: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum BudgetsCmd {
    /// Set a budget
    Set {
        /// key, team or project
        scope_type: String,
        id: String,
        /// daily, weekly, monthly or fixed
        #[arg(long)]
        period: String,
        #[command(flatten)]
        limits: Limits,
        /// IANA time zone of the period boundaries (Europe/Paris)
        #[arg(long)]
        timezone: Option<String>,
        /// Warning threshold in percent, or off
        #[arg(long)]
        soft_pct: Option<String>,
        /// Stop threshold in percent, or off
        #[arg(long)]
        hard_pct: Option<String>,
        /// Start of a fixed window (T)
        #[arg(long)]
        window_start: Option<String>,
        /// End of a fixed window (T)
        #[arg(long)]
        window_end: Option<String>,
    },
    /// Show budgets a page at a time, or one
    Show {
        scope_type: Option<String>,
        #[arg(requires = "scope_type")]
        id: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Delete a budget
    Delete { scope_type: String, id: String },
    /// Set budgets in bulk from CSV or JSON Lines (scope_type, scope_id and
    /// the fields of PUT /v1/budgets; a budget already set is replaced)
    Import {
        #[command(flatten)]
        from: ImportArgs,
    },
}

#[derive(Args, Debug)]
pub struct Range {
    /// From (T); default: 30 days ago
    #[arg(long)]
    pub from: Option<String>,
    /// To (T); default: now
    #[arg(long)]
    pub to: Option<String>,
    /// Keep the N largest groups
    #[arg(long)]
    pub top: Option<u32>,
}

#[derive(Args, Debug)]
pub struct SpendArgs {
    /// Dimensions: team,project,key,model,provider,feature,prompt_version,session
    #[arg(long)]
    pub group_by: Option<String>,
    /// hour or day
    #[arg(long)]
    pub bucket: Option<String>,
    #[command(flatten)]
    pub range: Range,
    #[arg(long)]
    pub team: Option<String>,
    #[arg(long)]
    pub project: Option<String>,
    #[arg(long)]
    pub key: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub provider: Option<String>,
    #[arg(long)]
    pub feature: Option<String>,
    #[arg(long)]
    pub prompt_version: Option<String>,
    /// Only this session (a Claude Code session id, or the client's x-tollgate-session)
    #[arg(long)]
    pub session: Option<String>,
    /// CSV instead of a table
    #[arg(long)]
    pub csv: bool,
}

#[derive(Args, Debug)]
#[command(after_help = "Example: which teams sent payment card numbers to which provider last month:
    tollgate audit --class card --from 2026-10-01 --to 2026-11-01")]
pub struct AuditArgs {
    /// A data class: email, phone, card, iban, ssn, ip, secret or a custom name
    #[arg(long)]
    pub class: Option<String>,
    #[arg(long)]
    pub team: Option<String>,
    #[arg(long)]
    pub provider: Option<String>,
    /// observed, redacted or blocked
    #[arg(long)]
    pub action: Option<String>,
    /// request or response (what was sent, or what came back)
    #[arg(long)]
    pub direction: Option<String>,
    /// From (T); default: 30 days ago
    #[arg(long)]
    pub from: Option<String>,
    /// To (T); default: now
    #[arg(long)]
    pub to: Option<String>,
    /// Every finding as JSON Lines (one record and class a line) instead of the sums
    #[arg(long)]
    pub export: bool,
}

#[derive(Args, Debug)]
pub struct CacheMissArgs {
    #[arg(long)]
    pub team: Option<String>,
    #[arg(long)]
    pub feature: Option<String>,
    /// From (T); default: 30 days ago
    #[arg(long)]
    pub from: Option<String>,
    /// To (T); default: now
    #[arg(long)]
    pub to: Option<String>,
}

#[derive(Subcommand, Debug)]
#[command(after_help = "A prompt file: {\"system\": \"You are …\", \"messages\": [{\"role\": \"user\", \"content\": \"Customer {{name}} asks: {{question}}\"}]}
Requests name it with \"tollgate_prompt\": {\"name\": \"support\", \"label\": \"production\", \"variables\": {…}}")]
pub enum PromptsCmd {
    /// Every prompt, its newest version and its labels
    List,
    /// A prompt's versions (tag, variables, cacheable prefix), labels and history
    Show { name: String },
    /// Store a file's content as the prompt's next version (unchanged content: the existing version)
    Push {
        name: String,
        /// A JSON file (- for stdin)
        file: String,
        /// Also point this label at it (e.g. staging, production)
        #[arg(long)]
        label: Option<String>,
        #[arg(long)]
        note: Option<String>,
        /// Who is making the change (recorded in the history)
        #[arg(long)]
        by: Option<String>,
    },
    /// Point a label at a version (a rollback is pointing it back)
    Label {
        name: String,
        label: String,
        version: u32,
        #[arg(long)]
        by: Option<String>,
    },
    /// What changed between two versions (default: the newest and the one before)
    Diff {
        name: String,
        #[arg(long)]
        from: Option<u32>,
        #[arg(long)]
        to: Option<u32>,
    },
}

#[derive(Subcommand, Debug)]
pub enum EvalCmd {
    /// Run one (and wait for its report unless --no-wait)
    Run {
        #[arg(long)]
        feature: String,
        /// The model to try (as a client would name it)
        #[arg(long)]
        candidate: String,
        /// The judge model, compared pairwise with the incumbent's answer
        #[arg(long)]
        judge: Option<String>,
        #[arg(long)]
        rubric: Option<String>,
        /// A regular expression every answer must match (repeatable)
        #[arg(long)]
        regex: Vec<String>,
        /// The answer must equal the incumbent's
        #[arg(long)]
        exact: bool,
        #[arg(long)]
        max_items: Option<u32>,
        /// The run's own budget in micro-dollars (default 1000000: $1)
        #[arg(long)]
        budget_micros: Option<u64>,
        #[arg(long)]
        no_wait: bool,
    },
    /// Runs, newest first
    List {
        #[arg(long)]
        feature: Option<String>,
    },
    /// One run's report
    Show { id: i64 },
}

#[derive(Subcommand, Debug)]
pub enum EvalSetsCmd {
    /// Every set, its size and age
    List,
    /// Delete a set's captured requests (all, or those before --before)
    Delete {
        feature: String,
        #[arg(long)]
        before: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum RoutingCmd {
    /// Set a feature's policy: candidates (cheapest passing wins), threshold
    Set {
        feature: String,
        /// Comma-separated models
        #[arg(long)]
        candidates: String,
        /// Pass rate a candidate must reach (0 to 1)
        #[arg(long, default_value_t = 0.9)]
        threshold: f64,
        #[arg(long)]
        min_items: Option<u64>,
        /// Promote the pick when an evaluation finishes (else: approve with `promote`)
        #[arg(long)]
        auto_promote: bool,
        /// Every request of the feature follows the pick, not only model "auto"
        #[arg(long)]
        bind: bool,
    },
    /// The policy, the pick, each candidate's evaluation and projected monthly saving
    Show { feature: String },
    /// Approve a model for the feature (or "none"); a rollback is promoting the previous one
    Promote {
        feature: String,
        model: String,
        /// Even without a qualifying evaluation
        #[arg(long)]
        force: bool,
        #[arg(long)]
        by: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum GuardrailsCmd {
    /// The policy in force, and its change number
    Show,
    /// Put a policy (a JSON file, the shape of the filter's `guardrails`; - for stdin) in force on every Envoy
    Set { file: String },
    /// Every Envoy back to its own configuration's policy
    Clear,
}

#[derive(Args, Debug)]
pub struct MoversArgs {
    /// Dimensions to compare (key,model,team,...)
    #[arg(long)]
    pub by: Option<String>,
    #[command(flatten)]
    pub range: Range,
}

#[derive(Subcommand, Debug)]
pub enum ReportCmd {
    /// The monthly review in Markdown: total and change, drivers, traffic per model, cache share, budgets hit
    Monthly {
        /// 2026-11 (default: this month)
        #[arg(long)]
        month: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum RequestsCmd {
    /// Ask for a higher limit (with an admin token, or your virtual key for your own key/team/project)
    Create {
        scope_type: String,
        id: String,
        #[command(flatten)]
        limits: Limits,
        /// Why (required)
        #[arg(long)]
        why: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// List requests
    List {
        /// pending, approved or refused
        #[arg(long)]
        status: Option<String>,
    },
    /// Approve: the new limit applies in every Envoy within a poll
    Approve {
        id: String,
        #[arg(long)]
        by: Option<String>,
        #[arg(long)]
        note: Option<String>,
    },
    /// Refuse
    Refuse {
        id: String,
        #[arg(long)]
        by: Option<String>,
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// A new random key and its hash
    New {
        #[arg(long, default_value = "tg-")]
        prefix: String,
    },
    /// The hash of a key (- reads it from standard input)
    Hash { key: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_what_the_docs_show() {
        let c = Cli::try_parse_from(["tollgate", "budgets", "set", "team", "search", "--limit-usd", "2.5", "--period", "monthly", "--json"]).unwrap();
        assert!(c.global.json);
        match c.cmd {
            Cmd::Budgets(BudgetsCmd::Set { scope_type, id, limits, .. }) => {
                assert_eq!((scope_type.as_str(), id.as_str(), limits.limit_usd.as_deref()), ("team", "search", Some("2.5")));
            }
            other => panic!("{other:?}"),
        }
        let c = Cli::try_parse_from(["tollgate", "keys", "create", "--team", "t", "--project", "p", "--tag", "a=1", "--tag", "b=2"]).unwrap();
        assert!(matches!(c.cmd, Cmd::Keys(KeysCmd::Create { ref tags, .. }) if tags.len() == 2));
        assert!(Cli::try_parse_from(["tollgate", "budgets", "set", "team", "x", "--limit-usd", "1", "--limit-micros", "2", "--period", "daily"]).is_err());
    }
}

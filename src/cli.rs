//! The `hearth` command line (`main.rs` only calls [`main`]); `app.rs` wires the instance it runs.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::{app, auth, config, http, storage, sysdns, util};
use anyhow::Context;
use clap::{Parser, Subcommand};

const LONG_VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("HEARTH_COMMIT"), ", built ", env!("HEARTH_BUILD_DATE"), ")");

#[derive(Parser)]
#[command(name = "hearth", version = LONG_VERSION, about = "One binary for the homelab: DNS filtering, HTTPS front, AI memory, metrics and an admin UI.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct ConfigArgs {
    /// The configuration file. When it does not exist the embedded defaults apply (and the UI creates it).
    #[arg(long, short = 'c', env = "HEARTH_CONFIG", default_value = "hearth.toml")]
    config: PathBuf,
    /// Override `server.data_dir` (not written to the file).
    #[arg(long, env = "HEARTH_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run hearth in the foreground.
    Run(ConfigArgs),
    /// Validate a configuration file; errors name the key.
    CheckConfig { file: PathBuf },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        what: ConfigCommand,
    },
    /// Admin account management.
    Admin {
        #[command(subcommand)]
        what: AdminCommand,
    },
    /// API tokens.
    Token {
        #[command(subcommand)]
        what: TokenCommand,
    },
    /// This machine's DNS set-up (needs root to change anything).
    System {
        #[command(subcommand)]
        what: SystemCommand,
    },
    /// Exit 0 when the local instance answers /readyz with 200.
    Healthcheck {
        #[command(flatten)]
        args: ConfigArgs,
        /// How long to wait for an answer.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: config::Duration,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the fully commented default configuration.
    Default,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin or replace its password (read from stdin); ends that admin's sessions.
    SetPassword {
        user: String,
        /// Also revoke the API tokens this admin created.
        #[arg(long)]
        revoke_tokens: bool,
        #[command(flatten)]
        args: ConfigArgs,
    },
    /// Print the one-time setup code the first-run wizard asks for (while no admin account exists).
    SetupCode {
        #[command(flatten)]
        args: ConfigArgs,
    },
    /// Print an argon2id hash of the password on stdin (for `basic_auth` in proxy routes).
    HashPassword,
}

/// What `hearth system resolved-stub` does.
#[derive(Clone, Copy, clap::ValueEnum)]
enum StubAction {
    /// Show whether the stub listener holds port 53 and what hearth changed.
    Status,
    /// Turn the stub listener off with a resolved.conf.d drop-in.
    Disable,
    /// Undo what `disable` did.
    Restore,
}

#[derive(Subcommand)]
enum SystemCommand {
    /// systemd-resolved's stub listener on 127.0.0.53:53, which keeps hearth off port 53: show it (`status`),
    /// turn it off with a resolved.conf.d drop-in (`disable`), or undo that (`restore`).
    ResolvedStub {
        action: StubAction,
        #[command(flatten)]
        sys: SysArgs,
    },
    /// Carry out the admin UI's request file (run as root by hearth-resolved.service) and leave the result beside it.
    ApplyRequest {
        file: PathBuf,
        #[command(flatten)]
        sys: SysArgs,
    },
}

#[derive(clap::Args, Clone)]
struct SysArgs {
    /// The machine's root directory (for tests).
    #[arg(long, default_value = "/", hide = true)]
    root: PathBuf,
    /// Do not restart systemd-resolved and hearth afterwards.
    #[arg(long)]
    no_restart: bool,
}

fn system_change(req: sysdns::Request, sys: &SysArgs) -> anyhow::Result<()> {
    let host = sysdns::Host::new(&sys.root);
    match req {
        sysdns::Request::DisableStub => host.disable_stub()?,
        sysdns::Request::Restore => host.restore()?,
    }
    system_change_restart(sys)
}

fn system_change_restart(sys: &SysArgs) -> anyhow::Result<()> {
    if !sys.no_restart {
        // resolved first (frees or takes port 53), then hearth so that its DNS listener binds again
        sysdns::restart(&["systemd-resolved.service"])?;
        sysdns::restart(&["hearth.service"])?;
    }
    Ok(())
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token in the instance's data dir (also while it runs) and print it once.
    Create {
        name: String,
        /// What the token may do: admin (everything; the default), memory (embeddings and collections), metrics
        /// (GET /metrics), dns:read (query log, stats, lists). Repeat it or give a comma list.
        #[arg(long = "scope", value_name = "SCOPE", default_value = "admin")]
        scopes: Vec<String>,
        /// The token stops working after this many days (default: never; revoke it to end it).
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=3650))]
        expires_in_days: Option<u32>,
        #[command(flatten)]
        args: ConfigArgs,
    },
}

fn parse_duration(s: &str) -> Result<config::Duration, String> {
    config::Duration::parse(s)
}

/// Parse the command line and run the command; the exit code says how it went.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hearth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("hearth").build()?)
}

fn open_db(args: &ConfigArgs) -> anyhow::Result<storage::Db> {
    let (_, _, cfg) = app::load_config(&args.config, args.data_dir.clone())?;
    let dir = cfg.data_dir();
    storage::Db::open(&dir, cfg.storage.busy_timeout.as_std(), &app::migrations())
        .with_context(|| format!("while opening the database in {}", dir.display()))
}

fn dispatch(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Run(args) => {
            if let Err(e) = app::load_config(&args.config, args.data_dir.clone()) {
                eprintln!("hearth: configuration error: {e}");
                return Ok(ExitCode::from(2));
            }
            util::map_large_allocations();
            runtime()?.block_on(app::run(app::RunOptions { config: args.config, data_dir: args.data_dir }))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { file } => check_config(&file),
        Command::Config { what: ConfigCommand::Default } => {
            print!("{}", config::DEFAULT_TOML);
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin { what: AdminCommand::HashPassword } => {
            let mut pw = String::new();
            std::io::stdin().read_to_string(&mut pw).context("while reading the password from stdin")?;
            let pw = pw.strip_suffix('\n').map(|p| p.strip_suffix('\r').unwrap_or(p)).unwrap_or(&pw).to_string();
            auth::validate_password(&pw)?;
            println!("{}", auth::hash_password(&pw)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin { what: AdminCommand::SetupCode { args } } => {
            let (_, _, cfg) = app::load_config(&args.config, args.data_dir.clone())?;
            let dir = cfg.data_dir();
            let file = auth::setup_code::path(&dir);
            match auth::setup_code::read(&dir).with_context(|| format!("reading {}", file.display()))? {
                Some(code) => {
                    println!("{code}");
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    let users = open_db(&args)?.blocking(|c| auth::user_count(c))?;
                    if users > 0 {
                        eprintln!("hearth: an admin account exists already: there is no setup code any more");
                    } else {
                        eprintln!("hearth: no setup code in {} yet: start hearth, which makes one", file.display());
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Admin { what: AdminCommand::SetPassword { user, revoke_tokens, args } } => {
            let mut pw = String::new();
            std::io::stdin().read_to_string(&mut pw).context("while reading the password from stdin")?;
            let pw = pw.strip_suffix('\n').map(|p| p.strip_suffix('\r').unwrap_or(p)).unwrap_or(&pw).to_string();
            auth::validate_username(&user)?;
            auth::validate_password(&pw)?;
            let db = open_db(&args)?;
            let phc = auth::hash_password(&pw)?;
            let (created, revoked) = db.blocking(|c| -> Result<_, auth::AuthError> {
                let created = auth::set_password(c, &user, &phc, util::unix_now())?;
                let revoked = if revoke_tokens { auth::revoke_user_tokens(c, &user)? } else { 0 };
                Ok((created, revoked))
            })?;
            eprintln!("{} admin {user:?}", if created { "created" } else { "updated the password of" });
            if revoke_tokens {
                eprintln!("revoked {revoked} API token(s) created by {user:?}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::System { what: SystemCommand::ResolvedStub { action, sys } } => {
            match action {
                StubAction::Status => {
                    let state = sysdns::Host::new(&sys.root).state(sysdns::stub_listening());
                    println!("{}", serde_json::to_string_pretty(&state)?);
                }
                StubAction::Disable => {
                    system_change(sysdns::Request::DisableStub, &sys)?;
                    println!("systemd-resolved's stub listener is off (undo: hearth system resolved-stub restore)");
                }
                StubAction::Restore => {
                    system_change(sysdns::Request::Restore, &sys)?;
                    println!("systemd-resolved is as it was before hearth changed it");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::System { what: SystemCommand::ApplyRequest { file, sys } } => {
            // as root in the service user's data dir: no link is followed, only a small regular file of the dir's
            // owner is read; the result is written beside it before hearth is restarted, so the UI finds it
            let host = sysdns::Host::new(&sys.root);
            if host.apply_request(&file, util::unix_now())?.is_some() {
                system_change_restart(&sys)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Token { what: TokenCommand::Create { name, scopes, expires_in_days, args } } => {
            let scopes = auth::parse_scopes(&scopes).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(!scopes.is_empty(), "give at least one --scope");
            let db = open_db(&args)?;
            let now = util::unix_now();
            let expires_at = expires_in_days.map(|d| now + 86_400 * i64::from(d));
            let (secret, info) =
                db.blocking(|c| auth::create_token(c, name.trim(), &scopes, "cli", now, expires_at))?;
            let names: Vec<&str> = info.scopes.iter().map(|s| s.as_str()).collect();
            eprintln!(
                "created API token {:?} (id {}, scopes {}); it is shown only now:",
                info.name,
                info.id,
                names.join(",")
            );
            println!("{secret}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Healthcheck { args, timeout } => {
            let (_, _, cfg) = app::load_config(&args.config, args.data_dir)?;
            let addr = cfg.server.http_listen[0].connect_addr();
            let res = runtime()?.block_on(http::api::probe(addr, "/readyz", timeout.as_std()));
            match res {
                Ok((200, _)) => {
                    println!("healthy: http://{addr}/readyz answered 200");
                    Ok(ExitCode::SUCCESS)
                }
                Ok((code, body)) => {
                    println!("unhealthy: http://{addr}/readyz answered {code}: {}", body.trim());
                    Ok(ExitCode::FAILURE)
                }
                Err(e) => {
                    println!("unhealthy: http://{addr}/readyz: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

fn check_config(file: &Path) -> anyhow::Result<ExitCode> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return Ok(ExitCode::from(2));
        }
    };
    match config::Config::from_toml(&text, &file.display().to_string()).and_then(|c| app::check_config(&c).map(|_| c)) {
        Ok(_) => {
            println!("{}: ok", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            Ok(ExitCode::from(2))
        }
    }
}

//! What each subcommand does. The artefact goes to stdout, everything else to stderr.

use std::{
    io::{IsTerminal, Write},
    time::{Duration, SystemTime},
};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use veracity_auth::{Error, RefreshTokenStore, SasAccess, SignInError, StorageSas};

use crate::{
    CliError,
    args::{ExecArgs, HeaderFormat, LoginArgs, SasArgs, SasFormat, TokenFormat},
    cache::Entry,
    config::{Kind, Profile},
    output::{self, KEY_VAR, Shell, TOKEN_VAR},
    session::{self, Want},
};

/// Writes the artefact to stdout; a reader that went away (`| head`) is not an error.
pub fn out(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Whether someone can answer a prompt: a terminal on stdin and stderr, and no `CI`.
pub fn can_prompt() -> bool {
    std::env::var_os("CI").is_none()
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal()
}

/// `token`.
pub async fn token(profile: &Profile, format: TokenFormat, want: Want) -> Result<(), CliError> {
    let issued = session::access_token(profile, want).await?;
    match format {
        TokenFormat::Raw => out(&format!("{}\n", issued.access_token)),
        TokenFormat::Json => out(&format!("{}\n", output::token_json(&issued, &profile.name))),
    }
}

/// `header`.
pub async fn header(profile: &Profile, format: HeaderFormat, want: Want) -> Result<(), CliError> {
    let key = session::api_key(profile)?;
    let issued = session::access_token(profile, want).await?;
    match format {
        HeaderFormat::Lines => out(&output::header_lines(&issued, &key)),
        HeaderFormat::Json => out(&format!("{}\n", output::header_json(&issued, &key))),
    }
}

/// `env`.
pub async fn env(profile: &Profile, shell: Shell, want: Want) -> Result<(), CliError> {
    let key = session::api_key(profile)?;
    let issued = session::access_token(profile, want).await?;
    let vars = [
        (TOKEN_VAR, issued.access_token.as_str()),
        (KEY_VAR, key.as_str()),
    ];
    out(&output::assignments(shell, &vars))
}

/// `exec`: the child inherits stdin, stdout and stderr, and its exit code is ours.
pub async fn exec(profile: &Profile, args: ExecArgs) -> Result<(), CliError> {
    let key = session::api_key(profile)?;
    let issued = session::access_token(profile, args.want).await?;
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| CliError::other("no command to run"))?;
    let status = tokio::process::Command::new(program)
        .args(rest)
        .env(TOKEN_VAR, &issued.access_token)
        .env(KEY_VAR, &key)
        .status()
        .await
        .map_err(|e| CliError::other(format!("cannot run {}: {e}", program.to_string_lossy())))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(CliError::Child(u8::try_from(code).unwrap_or(1))),
        // Killed by a signal: 128 + its number, as shells say.
        None => {
            #[cfg(unix)]
            let code = std::os::unix::process::ExitStatusExt::signal(&status)
                .map_or(1, |signal| 128 + signal);
            #[cfg(not(unix))]
            let code = 1;
            Err(CliError::Child(u8::try_from(code).unwrap_or(1)))
        }
    }
}

/// `sas`.
pub async fn sas(profile: &Profile, args: SasArgs) -> Result<(), CliError> {
    let workspace = args
        .workspace
        .or_else(|| profile.workspace.clone())
        .ok_or_else(|| {
            CliError::Config(format!(
                "no workspace: give --workspace, or `workspace` in profile `{}`",
                profile.name
            ))
        })?;
    let authenticator = session::authenticator(profile, Want::default())?;
    let builder = match &args.dataset {
        Some(dataset) => StorageSas::dataset(&authenticator, workspace, dataset),
        None => {
            let access = if args.write {
                SasAccess::Write
            } else {
                SasAccess::Read
            };
            let mut builder = StorageSas::storage(&authenticator, workspace, access);
            if let Some(name) = args.storage_name {
                builder = builder.storage_name(name);
            }
            if let Some(path) = args.path {
                builder = builder.path(path);
            }
            builder
        }
    };
    let gateway = session::gateway(profile)?.to_string();
    let sas = builder
        .gateway(gateway)
        .lifetime(args.lifetime)
        .build()?
        .current()
        .await?;
    let url = sas.signed_url();
    let token = url.split_once('?').map_or("", |(_, query)| query);
    let expires = output::rfc3339(sas.valid_until());
    match args.format {
        SasFormat::Url => match &args.file {
            Some(file) => out(&format!("{}\n", sas.file_url(file))),
            None => out(&format!("{url}\n")),
        },
        SasFormat::Json => out(&format!(
            "{}\n",
            serde_json::json!({
                "url": url,
                "resourceUri": sas.resource_uri(),
                "sasToken": token,
                "expiresOn": expires,
            })
        )),
        SasFormat::Env => out(&output::assignments(
            args.shell,
            &[
                ("VERACITY_SAS_URL", &url),
                ("AZURE_STORAGE_SAS_TOKEN", token),
                ("RCLONE_AZUREBLOB_SAS_URL", &url),
            ],
        )),
    }
}

/// `status`: what the profile is, and whether a token can be had without a prompt.
pub async fn status(profile: &Profile, want: Want) -> Result<(), CliError> {
    let mut report = format!("profile: {}\n", profile.name);
    match profile.kind {
        Kind::ServiceAccount => {
            report += &format!("account: service account {}\n", profile.client_id);
        }
        Kind::Person => {
            report += &format!("account: a person signed in to app {}\n", profile.client_id);
            let store = session::store()?;
            let path = store.path(&profile.client_id).map_err(Error::from)?;
            let kept = store
                .load(&profile.client_id)
                .map_err(Error::from)?
                .is_some();
            let state = if kept {
                "kept in"
            } else {
                "none; it would be kept in"
            };
            report += &format!("sign-in: {state} {}\n", path.display());
        }
    }
    let token = session::access_token(profile, want).await;
    match &token {
        Ok(issued) => {
            let left = issued.valid_for().as_secs();
            report += &format!(
                "token: valid until {} ({}m{:02}s left)\n",
                output::rfc3339(issued.expires_at()),
                left / 60,
                left % 60
            );
        }
        Err(e) => report += &format!("token: none ({e})\n"),
    }
    out(&report)?;
    token.map(drop)
}

/// `logout`: forgets the sign-in (a person's) and the tokens kept for the profile.
pub async fn logout(profile: &Profile) -> Result<(), CliError> {
    Entry::lock(profile)?.remove()?;
    if profile.kind == Kind::Person {
        session::store()?
            .delete(&profile.client_id)
            .map_err(Error::from)?;
    }
    eprintln!("Signed out of profile `{}`.", profile.name);
    Ok(())
}

/// `login`: a person's sign-in, kept for later runs; its access token serves the next one.
pub async fn login(profile: &Profile, args: LoginArgs) -> Result<(), CliError> {
    if profile.kind != Kind::Person {
        return Err(CliError::Config(format!(
            "profile `{}` is a service account: it needs no sign-in",
            profile.name
        )));
    }
    if !args.paste && !args.no_browser && !can_prompt() {
        return Err(CliError::SignInNeeded {
            profile: profile.name.clone(),
            login: "login --paste",
        });
    }
    let sign_in = session::sign_in(profile)?;
    let started = SystemTime::now();
    let signed_in = if args.paste {
        let pending = sign_in.start().await?;
        let redirect_uri = pending.redirect_uri().to_owned();
        eprintln!(
            "Open this address in a browser on any machine and sign in:\n\n  {}\n\n\
             The browser then lands on an address starting with {redirect_uri} (it may fail \
             to load it). Paste that whole address here and press Enter:",
            pending.url()
        );
        let mut finish = tokio::spawn(pending.finish());
        let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
        let mut pasted = String::new();
        tokio::select! {
            read = stdin.read_line(&mut pasted) => {
                read?;
                if let Err(e) = forward(&pasted, &redirect_uri).await {
                    finish.abort();
                    return Err(e);
                }
                finish.await.map_err(CliError::other)??
            }
            // The browser reached the listener itself: it runs on this machine.
            done = &mut finish => done.map_err(CliError::other)??,
        }
    } else {
        let sign_in = match args.no_browser {
            true => sign_in.on_authorize_url(|url| {
                eprintln!("Open this address in a browser to sign in:\n\n  {url}\n");
            }),
            false => sign_in,
        };
        let _spinner = Spinner::start();
        sign_in.run().await?
    };
    let refresh_token = signed_in
        .refresh_token()
        .ok_or(Error::SignIn(SignInError::NoRefreshToken))?;
    let store = session::store()?;
    store
        .save(&profile.client_id, refresh_token)
        .map_err(Error::from)?;
    Entry::lock(profile)?.write(&session::issued(signed_in.access_token(), started));
    let path = store.path(&profile.client_id).map_err(Error::from)?;
    eprintln!(
        "Signed in (profile `{}`); the sign-in is kept in {}.",
        profile.name,
        path.display()
    );
    Ok(())
}

/// Hands the pasted redirect address to this sign-in's own loopback listener, as the
/// browser would have: the listener checks it (path, `state`) and the sign-in finishes.
async fn forward(pasted: &str, redirect_uri: &str) -> Result<(), CliError> {
    let refused = || {
        CliError::other(
            "the pasted text is not this sign-in's answer: paste the whole address the browser \
             landed on after signing in (http://localhost:…/?code=…), in the same run",
        )
    };
    let pasted: http::Uri = pasted.trim().parse().map_err(|_| refused())?;
    let ours: http::Uri = redirect_uri.parse().map_err(|_| refused())?;
    let port = ours.port_u16().ok_or_else(refused)?;
    let target = pasted.path_and_query().ok_or_else(refused)?;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request =
        format!("GET {target} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    match answer.starts_with(b"HTTP/1.1 200") {
        true => Ok(()),
        false => Err(refused()),
    }
}

/// A spinner on stderr while a sign-in waits for the browser, when stderr is a terminal.
struct Spinner(Option<tokio::task::JoinHandle<()>>);

impl Spinner {
    fn start() -> Spinner {
        if !std::io::stderr().is_terminal() {
            return Spinner(None);
        }
        Spinner(Some(tokio::spawn(async {
            for frame in ['|', '/', '-', '\\'].into_iter().cycle() {
                eprint!("\r{frame} waiting for the sign-in in the browser…");
                tokio::time::sleep(Duration::from_millis(120)).await;
            }
        })))
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
            eprint!("\r\x1b[2K");
        }
    }
}

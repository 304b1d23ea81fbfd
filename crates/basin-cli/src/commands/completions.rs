//! `basin completions` and `basin man`: shell completions and manual pages, generated from
//! the same clap definition as `--help`, so they cannot drift from the commands.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap_complete::Shell;

use crate::output::status;

#[derive(clap::Args)]
#[command(after_help = "Install them once for your shell:
  bash:  basin completions bash > ~/.local/share/bash-completion/completions/basin
  zsh:   basin completions zsh > ~/.zfunc/_basin     (with fpath+=~/.zfunc before compinit)
  fish:  basin completions fish > ~/.config/fish/completions/basin.fish")]
pub struct CompletionsArgs {
    /// The shell to complete for
    shell: Shell,
}

#[derive(clap::Args)]
#[command(after_help = "Examples:
  basin man | man -l -                   # read the main page now
  basin man --dir ~/.local/share/man/man1 # install a page per command: man basin-import")]
pub struct ManArgs {
    /// Write basin.1 and one page per command (basin-import.1, ...) into DIR instead of
    /// printing the main page
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Prints the completion script for `args.shell` on stdout.
pub fn completions(args: CompletionsArgs, mut cli: clap::Command) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cli, "basin", &mut out);
    out.flush()
        .context("cannot write the completions to stdout")?;
    Ok(())
}

/// Prints the main manual page (roff) on stdout, or writes every page into `args.dir`.
pub fn man(args: ManArgs, cli: clap::Command) -> anyhow::Result<()> {
    match args.dir {
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(cli)
                .render(&mut out)
                .context("cannot write the manual page to stdout")?;
            out.flush()
                .context("cannot write the manual page to stdout")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cli, &dir)
                .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
            status(format!("manual pages written into {}", dir.display()));
        }
    }
    Ok(())
}

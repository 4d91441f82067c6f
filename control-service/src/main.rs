//! `tollgate`: the control service (`tollgate serve`) and the admin command
//! line. Parsing is clap's (`cli::args`); each command group lives in its
//! own module of `cli`.

use clap::{CommandFactory, Parser};
use tollgate_control::cli::args::{Cli, Cmd, ReportCmd};
use tollgate_control::cli::{budgets, evals, keys, prompts, reports, serve, Client};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if e.kind() == ErrorKind::InvalidSubcommand {
                // args_os: `std::env::args` panics on an argument that is not UTF-8.
                let what = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
                eprintln!("tollgate: unknown command: {}\n", tollgate_control::cli::terminal_safe(&what));
            }
            e.exit()
        }
    };
    let g = cli.global;
    match cli.cmd {
        Cmd::Serve(a) => serve::run(a),
        Cmd::Key(k) => keys::offline(g.json, k),
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "tollgate", &mut std::io::stdout());
        }
        cmd => {
            let c = Client::from_global(&g);
            match cmd {
                Cmd::Keys(k) => keys::run(&c, k),
                Cmd::Budgets(b) => budgets::run(&c, b),
                Cmd::Requests(r) => budgets::requests(&c, r),
                Cmd::Spend(a) => reports::spend(&c, a),
                Cmd::Movers(a) => reports::movers(&c, a),
                Cmd::Report(ReportCmd::Monthly { month }) => reports::monthly(&c, month),
                Cmd::Alerts => reports::alerts(&c),
                Cmd::Audit(a) => reports::audit(&c, a),
                Cmd::Guardrails(g) => reports::guardrails(&c, g),
                Cmd::Prompts(p) => prompts::run(&c, p),
                Cmd::CacheMisses(a) => reports::cache_misses(&c, a),
                Cmd::Eval(e) => evals::eval(&c, e),
                Cmd::EvalSets(e) => evals::eval_sets(&c, e),
                Cmd::Routing(r) => evals::routing(&c, r),
                Cmd::JsonCompliance => evals::json_compliance(&c),
                Cmd::Serve(_) | Cmd::Key(_) | Cmd::Completions { .. } => {}
            }
        }
    }
}

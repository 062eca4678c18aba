//! `headroom operator run` and `headroom operator crd`.

use std::process::ExitCode;
use std::time::Duration;

use headroom_operator::policy::Defaults;
use headroom_operator::{LeaseOptions, Options};
use tokio_util::sync::CancellationToken;

use crate::cli::{OperatorArgs, OperatorCommand, OperatorRunArgs};

pub async fn run(args: OperatorArgs, stop: CancellationToken) -> anyhow::Result<ExitCode> {
    match args.command {
        OperatorCommand::Crd => {
            print!("{}", headroom_operator::crd::crd_yaml());
            Ok(ExitCode::SUCCESS)
        }
        OperatorCommand::Run(args) => operate(*args, stop).await,
    }
}

async fn operate(args: OperatorRunArgs, stop: CancellationToken) -> anyhow::Result<ExitCode> {
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let lease = (!args.no_leader_election).then(|| LeaseOptions {
        namespace: args.lease_namespace.clone(),
        name: args.lease_name.clone(),
        identity: identity.clone(),
        duration: Duration::from_secs(15),
        grace: Duration::from_secs(5),
    });
    let options = Options {
        listen: args.listen,
        state_dir: args.state_dir,
        defaults: Defaults { model: args.model, model_dir: args.model_dir, secrets_dir: args.secrets_dir },
        namespace: args.namespace,
        lease,
        instance: Some(identity),
    };
    headroom_operator::run_with_default_client(options, stop).await.map_err(anyhow::Error::msg)?;
    Ok(ExitCode::SUCCESS)
}

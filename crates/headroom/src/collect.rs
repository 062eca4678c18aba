//! `headroom collect files|prometheus|host`.

use std::process::ExitCode;

use anyhow::Context;
use headroom_collect::SourceConfig;
use headroom_collect::files::write_file;
use headroom_collect::host::HostConfig;
use headroom_collect::inspect::summarize;
use headroom_collect::prometheus::{AuthConfig, Preset, PrometheusConfig, QueryConfig, SecretSource};
use headroom_collect::store::Store;
use tokio_util::sync::CancellationToken;

use crate::cli::{CollectArgs, CollectSource};
use crate::inspect::print_summaries;

pub async fn run(args: CollectArgs, cancel: &CancellationToken) -> anyhow::Result<ExitCode> {
    let (config, sink) = match args.source {
        CollectSource::Files { paths, file, sink } => (SourceConfig::Files { paths, options: file.options()? }, sink),
        CollectSource::Prometheus(args) => (SourceConfig::Prometheus(prometheus_config(&args)?), args.sink.clone()),
        CollectSource::Host { host, sink } => (SourceConfig::Host(host_config(&host)?), sink),
    };
    let source = config.build()?;
    let cfg = sink.grid.config()?;
    let frame = source.collect(cancel).await.with_context(|| format!("collecting from {}", source.describe()))?;
    if frame.is_empty() {
        anyhow::bail!("{} returned no samples; nothing was written", source.describe());
    }
    match &sink.out {
        Some(path) => {
            write_file(path, &frame)?;
            eprintln!("wrote {} samples to {}", frame.len(), path.display());
        }
        None => {
            // Ctrl-C stops a wait for another writer's lock; a write under way runs to its end.
            let store = Store::open(&sink.store)?.with_cancel(cancel.clone());
            let w = store.write(&frame)?;
            eprintln!(
                "stored {} samples of {} series in {} ({} replaced points already stored at the same time)",
                w.points_in,
                w.series,
                store.dir().display(),
                w.points_replaced
            );
        }
    }
    print_summaries(&summarize(&frame, &cfg)?, &cfg, sink.output)?;
    Ok(ExitCode::SUCCESS)
}

fn host_config(args: &crate::cli::HostArgs) -> anyhow::Result<HostConfig> {
    Ok(HostConfig {
        interval: headroom_core::parse_duration(&args.interval)?.into(),
        duration: args.duration.as_deref().map(headroom_core::parse_duration).transpose()?.map(Into::into),
        processes: args.processes.clone(),
        units: args.units.clone(),
        all_units: args.all_units,
    })
}

fn prometheus_config(args: &crate::cli::PrometheusArgs) -> anyhow::Result<PrometheusConfig> {
    use headroom_core::{parse_duration, parse_timestamp};

    let mut cfg = PrometheusConfig::new(args.url.clone(), 0, 0);
    cfg.step = parse_duration(&args.step)?.into();
    cfg.timeout = parse_duration(&args.timeout)?.into();
    cfg.concurrency = args.concurrency;
    cfg.retries = args.retries;
    cfg.max_points_per_request = args.max_points_per_request;
    cfg.ca_file = args.ca_file.clone();
    if args.queries.is_empty() {
        for name in &args.preset {
            cfg.presets.push(match name.as_str() {
                "kubernetes" => Preset::Kubernetes,
                "node" => Preset::Node,
                other => anyhow::bail!("--preset {other:?}: presets are kubernetes and node"),
            });
        }
    } else {
        for q in &args.queries {
            let Some((metric, promql)) = q.split_once('=') else {
                anyhow::bail!("--query {q:?}: write it as METRIC=PROMQL, e.g. cpu=sum by (instance) (rate(...))");
            };
            cfg.queries.push(QueryConfig::new(metric.trim(), promql.trim(), args.entity.clone()));
        }
    }
    cfg.auth = match (&args.bearer_token_file, &args.bearer_token_env, &args.basic_user) {
        (Some(f), _, _) => Some(AuthConfig::Bearer { token: SecretSource::File(f.clone()) }),
        (_, Some(v), _) => Some(AuthConfig::Bearer { token: SecretSource::Env(v.clone()) }),
        (_, _, Some(user)) => {
            let password = match (&args.basic_password_file, &args.basic_password_env) {
                (Some(f), _) => SecretSource::File(f.clone()),
                (_, Some(v)) => SecretSource::Env(v.clone()),
                _ => anyhow::bail!("--basic-user needs --basic-password-file or --basic-password-env"),
            };
            Some(AuthConfig::Basic { username: user.clone(), password })
        }
        _ => None,
    };
    let end = args.end.as_deref().map(|e| parse_timestamp(e, None)).transpose()?;
    let now = now_ms();
    Ok(cfg.with_range(parse_duration(&args.range)?, end, now))
}

/// Wall-clock now, UTC ms: read here, at the edge, and passed in.
fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

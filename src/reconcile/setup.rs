//! What a run needs, made once from the settings (no network call), for the command and
//! the scheduled function alike.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::Instant;

use super::change::{Context, Object};
use super::config::ReconcileConfig;
use super::run::LastRun;
use super::run::{Mode, NoTable, ObjectReport, Probe, Reconciler, SeenIndex, Watermarks};
use super::window;
use crate::adapter::AdapterError;
use crate::aws::{
    AwsSecretStore, DynamoSeen, DynamoWatermarks, LazySdk, PayloadStore, SqsTransport,
};
use crate::envelope::Destination;
use crate::twenty_api::{ApiError, TwentyApi};

/// Twenty clamps larger pages to its own cap.
const PAGE_LIMIT: u32 = 1000;

/// The table, if one is set: seen changes and watermarks.
pub enum Table {
    Dynamo {
        seen: DynamoSeen,
        watermarks: DynamoWatermarks,
    },
    None(NoTable),
}

impl Table {
    pub fn dynamo(sdk: LazySdk, name: &str) -> Self {
        Self::Dynamo {
            seen: DynamoSeen::lazy(sdk.clone(), name),
            watermarks: DynamoWatermarks::lazy(sdk, name),
        }
    }
}

impl SeenIndex for Table {
    async fn seen_among(&self, changes: &[Probe]) -> Result<HashSet<String>, AdapterError> {
        match self {
            Self::Dynamo { seen, .. } => seen.seen_among(changes).await,
            Self::None(t) => t.seen_among(changes).await,
        }
    }
}

impl Watermarks for Table {
    async fn watermark(&self, scope: &str) -> Result<Option<String>, AdapterError> {
        match self {
            Self::Dynamo { watermarks, .. } => watermarks.watermark(scope).await,
            Self::None(t) => t.watermark(scope).await,
        }
    }

    async fn set_watermark(&self, scope: &str, at: &str) -> Result<(), AdapterError> {
        match self {
            Self::Dynamo { watermarks, .. } => watermarks.set_watermark(scope, at).await,
            Self::None(t) => t.set_watermark(scope, at).await,
        }
    }

    async fn record_run(&self, run: &LastRun) -> Result<(), AdapterError> {
        match self {
            Self::Dynamo { watermarks, .. } => watermarks.record_run(run).await,
            Self::None(t) => t.record_run(run).await,
        }
    }
}

pub struct Setup {
    pub config: ReconcileConfig,
    pub api: TwentyApi,
    pub transport: SqsTransport,
    pub table: Table,
}

impl Setup {
    pub async fn from_config(config: ReconcileConfig) -> Result<Self, String> {
        let sdk = LazySdk::default();
        let api = config
            .api
            .client(|| Arc::new(AwsSecretStore::lazy(sdk.clone())))?;
        let mut transport = SqsTransport::connect(&config.queue_url).await;
        if config.payload_bucket.is_some() {
            transport = transport.with_payload_store(PayloadStore::lazy(sdk.clone()));
        }
        let table = match &config.table {
            Some(name) => Table::dynamo(sdk, name),
            None => Table::None(NoTable),
        };
        Ok(Self {
            config,
            api,
            transport,
            table,
        })
    }

    /// The objects to read: those named (each checked against the workspace's, before
    /// anything is queued), or every active, non-system one.
    pub async fn objects(
        &self,
        named: &[String],
        deadline: Instant,
    ) -> Result<Vec<Object>, ApiError> {
        let all = self.api.objects(deadline).await?;
        if named.is_empty() {
            return Ok(all
                .into_iter()
                .filter(|(_, d)| *d)
                .map(|(o, _)| o)
                .collect());
        }
        named
            .iter()
            .map(|name| {
                all.iter()
                    .find(|(o, _)| &o.plural == name)
                    .map(|(o, _)| o.clone())
                    .ok_or_else(|| ApiError::UnknownObject(name.clone()))
            })
            .collect()
    }

    pub async fn run(
        &self,
        objects: &[Object],
        mode: Mode,
        dry_run: bool,
        deadline: Instant,
        progress: impl FnMut(&ObjectReport),
    ) -> Vec<ObjectReport> {
        let received_at = window::timestamp(SystemTime::now());
        let reconciler = Reconciler {
            api: &self.api,
            transport: &self.transport,
            table: &self.table,
            context: Context {
                received_at: &received_at,
                workspace_id: self.config.workspace_id.as_deref(),
                destination: Destination {
                    fifo: self.config.fifo,
                    payload_bucket: self.config.payload_bucket.as_deref(),
                },
            },
            dry_run,
            deadline,
            page_limit: PAGE_LIMIT,
        };
        reconciler.run(objects, mode, progress).await
    }

    /// A scheduled run's mode, from now.
    pub fn scheduled(&self) -> Mode {
        Mode::Scheduled {
            now: SystemTime::now(),
            overlap: self.config.overlap,
            settle: self.config.settle,
            first_lookback: self.config.first_lookback,
        }
    }
}

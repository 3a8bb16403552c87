//! The worker: takes jobs from the store (with a lease), writes each type's snapshot as NDJSON
//! files into the blob store a page at a time, and records its progress after every finished
//! file, so that a job taken over after a crash resumes after its last finished file. Also
//! removes the files of cancelled and expired jobs.

use std::sync::Arc;
use std::time::Duration;

use blob_store::{BlobError, BlobStore, ByteStream};
use bytes::{Bytes, BytesMut};
use event_log::EventLog;
use futures::StreamExt;
use tokio::sync::{mpsc, watch, Notify};

use crate::filter::Filter;
use crate::job::{ExportJob, JobState, OutputFile};
use crate::source::SnapshotSource;
use crate::store::{JobStore, StoreError};

#[derive(Clone, Debug)]
pub struct Settings {
    /// Resources read per page of the snapshot.
    pub page_size: usize,
    /// A file is closed once it holds this many bytes (the next resource starts a new one).
    pub max_file_bytes: u64,
    /// How long the files of a finished job are kept.
    pub retention: Duration,
    /// How long a job stays with a worker that stops renewing its lease.
    pub lease: Duration,
    /// How often the store is looked at when nothing wakes the worker.
    pub poll: Duration,
    /// Longest wait for the snapshot source to reach a job's position before trying later.
    pub source_wait: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            page_size: 1000,
            max_file_bytes: 100 * 1024 * 1024,
            retention: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(1),
            source_wait: Duration::from_secs(30),
        }
    }
}

pub struct Worker {
    /// Names this worker's leases; a worker started again with the same id takes its jobs back
    /// at once.
    pub id: String,
    pub store: Arc<dyn JobStore>,
    pub source: Arc<dyn SnapshotSource>,
    pub log: Arc<dyn EventLog>,
    pub blobs: Arc<dyn BlobStore>,
    pub settings: Settings,
    /// Notified when a job is kicked off, so it starts without waiting for the next poll.
    pub wake: Arc<Notify>,
}

/// Why an export stopped before completing.
enum Stop {
    /// The owner cancelled it.
    Cancelled,
    /// The worker is stopping, or the source is not there yet: another run resumes it.
    Later,
    /// It cannot complete.
    Failed(String),
}

impl From<StoreError> for Stop {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Cancelled => Stop::Cancelled,
            other => Stop::Failed(other.to_string()),
        }
    }
}

pub fn now_ms() -> i64 {
    fhir_core::instant::unix_millis(fhir_core::instant::now())
}

impl Worker {
    /// Runs jobs until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            if let Err(error) = self.sweep().await {
                tracing::warn!(%error, "export: removing expired files failed");
            }
            let mut idle = true;
            match self.store.claim(&self.id, now_ms(), now_ms() + self.settings.lease.as_millis() as i64).await {
                Ok(Some(job)) => idle = !self.run_job(job, &stop).await,
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "export: cannot take a job"),
            }
            if idle {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.settings.poll) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }

    /// Runs one job to its end (or until stopped); whether it ended (completed, failed,
    /// cancelled) rather than being left for later.
    pub async fn run_job(&self, mut job: ExportJob, stop: &watch::Receiver<bool>) -> bool {
        let started = std::time::Instant::now();
        match self.export(&mut job, stop).await {
            Ok(()) => {
                job.state = JobState::Completed;
                job.finished_ms = Some(now_ms());
                if let Err(error) = self.store.save(&job, 0).await {
                    tracing::warn!(%error, job = %job.id, "export: cannot record the completion");
                    return false;
                }
                tracing::info!(job = %job.id, resources = job.progress.exported, files = job.output.len(), elapsed_ms = started.elapsed().as_millis() as u64, "export completed");
                true
            }
            Err(Stop::Cancelled) => {
                tracing::info!(job = %job.id, "export cancelled");
                true
            }
            Err(Stop::Later) => false,
            Err(Stop::Failed(why)) => {
                tracing::error!(job = %job.id, %why, "export failed");
                job.state = JobState::Failed;
                job.error = Some(why);
                job.finished_ms = Some(now_ms());
                let _ = self.store.save(&job, 0).await;
                true
            }
        }
    }

    async fn save(&self, job: &ExportJob) -> Result<(), Stop> {
        Ok(self.store.save(job, now_ms() + self.settings.lease.as_millis() as i64).await?)
    }

    async fn export(&self, job: &mut ExportJob, stop: &watch::Receiver<bool>) -> Result<(), Stop> {
        job.state = JobState::Running;
        self.save(job).await?;
        if !self.source.wait_for(job.as_of, self.settings.source_wait).await {
            tracing::warn!(job = %job.id, "export: the snapshot source has not reached the job's position yet");
            return Err(Stop::Later);
        }
        let filter = Filter::new(&job.plan).map_err(Stop::Failed)?;
        while job.progress.type_index < job.plan.types.len() {
            let resource_type = job.plan.types[job.progress.type_index].clone();
            self.export_type(job, &resource_type, &filter, stop).await?;
            job.progress.type_index += 1;
            job.progress.after = 0;
            job.progress.next_part = 1;
            self.save(job).await?;
        }
        Ok(())
    }

    /// Writes the snapshot of one type from `job.progress.after` on.
    async fn export_type(&self, job: &mut ExportJob, resource_type: &str, filter: &Filter, stop: &watch::Receiver<bool>) -> Result<(), Stop> {
        let mut part: Option<Part> = None;
        let mut after = job.progress.after;
        let since = job.plan.since_ms;
        loop {
            if *stop.borrow() {
                if let Some(part) = part {
                    part.abandon().await;
                }
                return Err(Stop::Later);
            }
            let positions = self
                .source
                .live_at(&job.tenant, resource_type, job.as_of, since, after, self.settings.page_size)
                .await
                .map_err(|why| Stop::Failed(format!("reading the snapshot of {resource_type}: {why}")))?;
            if positions.is_empty() {
                break;
            }
            // Bodies a few at a time: memory follows the largest bodies, not the page size.
            for chunk in positions.chunks(READ_CHUNK) {
                let events = self.log.read_positions(chunk).await.map_err(|error| Stop::Failed(format!("reading the log: {error}")))?;
                for event in events {
                    after = event.position;
                    if !filter.accepts(resource_type, &event.body) {
                        continue;
                    }
                    let open = part.get_or_insert_with(|| Part::start(self.blobs.clone(), resource_type, job.file_key(resource_type, job.progress.next_part)));
                    open.write(&event.body).await?;
                    if let Some(full) = part.take_if(|open| open.bytes >= self.settings.max_file_bytes) {
                        let file = full.finish().await?;
                        job.progress.exported += file.count;
                        job.output.push(file);
                        job.progress.next_part += 1;
                        job.progress.after = after;
                        self.save(job).await?;
                    }
                }
            }
            // Without an open file, everything up to here is done; with one, the lease is renewed
            // (and a cancellation noticed) but resuming starts the file again.
            if part.is_none() {
                job.progress.after = after;
            }
            if let Err(stop) = self.save(job).await {
                if let Some(part) = part {
                    part.abandon().await;
                }
                return Err(stop);
            }
        }
        if let Some(part) = part {
            let file = part.finish().await?;
            job.progress.exported += file.count;
            job.output.push(file);
        }
        Ok(())
    }

    /// Removes the files of cancelled jobs and of jobs finished longer ago than the retention.
    pub async fn sweep(&self) -> Result<(), StoreError> {
        let before = now_ms() - self.settings.retention.as_millis() as i64;
        for job in self.store.expired(before).await? {
            let mut keys: Vec<String> = job.output.iter().map(|file| file.key.clone()).collect();
            // A file being written when the job was cancelled.
            if let Some(resource_type) = job.plan.types.get(job.progress.type_index) {
                keys.push(job.file_key(resource_type, job.progress.next_part));
            }
            for key in keys {
                if let Err(error) = self.blobs.delete(&key).await {
                    tracing::warn!(%error, "export: cannot remove a file");
                    return Ok(());
                }
            }
            self.store.remove(&job.tenant, &job.id).await?;
        }
        Ok(())
    }
}

/// Bodies read from the log at once.
const READ_CHUNK: usize = 250;

/// Buffered bytes are handed to the upload in pieces of about this size.
const CHUNK: usize = 256 * 1024;

/// One NDJSON file being written: lines go through a channel into a streaming upload.
struct Part {
    resource_type: String,
    key: String,
    sender: mpsc::Sender<blob_store::Result<Bytes>>,
    buffer: BytesMut,
    count: u64,
    bytes: u64,
    upload: tokio::task::JoinHandle<blob_store::Result<blob_store::Stored>>,
}

impl Part {
    fn start(blobs: Arc<dyn BlobStore>, resource_type: &str, key: String) -> Part {
        let (sender, receiver) = mpsc::channel::<blob_store::Result<Bytes>>(4);
        let body: ByteStream = futures::stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|chunk| (chunk, receiver)) }).boxed();
        let upload_key = key.clone();
        let upload = tokio::spawn(async move { blobs.put(&upload_key, "application/fhir+ndjson", body).await });
        Part { resource_type: resource_type.to_string(), key, sender, buffer: BytesMut::with_capacity(CHUNK), count: 0, bytes: 0, upload }
    }

    async fn write(&mut self, body: &[u8]) -> Result<(), Stop> {
        self.buffer.extend_from_slice(body);
        self.buffer.extend_from_slice(b"\n");
        self.count += 1;
        self.bytes += body.len() as u64 + 1;
        if self.buffer.len() >= CHUNK {
            let chunk = self.buffer.split().freeze();
            if self.sender.send(Ok(chunk)).await.is_err() {
                // The upload ended early: its error says why.
                return Err(Stop::Failed(format!("writing {}: the upload stopped", self.key)));
            }
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<OutputFile, Stop> {
        if !self.buffer.is_empty() {
            let chunk = self.buffer.split().freeze();
            let _ = self.sender.send(Ok(chunk)).await;
        }
        drop(self.sender);
        match self.upload.await {
            Ok(Ok(_)) => Ok(OutputFile { resource_type: self.resource_type, key: self.key, count: self.count, bytes: self.bytes }),
            Ok(Err(error)) => Err(Stop::Failed(format!("writing {}: {error}", self.key))),
            Err(error) => Err(Stop::Failed(format!("writing {}: {error}", self.key))),
        }
    }

    /// Ends the upload with an error, so that no partial file is kept.
    async fn abandon(self) {
        let _ = self.sender.send(Err(BlobError::Upload("the export stopped".into()))).await;
        drop(self.sender);
        let _ = self.upload.await;
    }
}

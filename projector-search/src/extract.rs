//! Extracting a batch's index values on worker threads while the writer inserts: extraction
//! (JSON parsing and the parameters' FHIRPath expressions) costs about as much as the inserts,
//! so on a large batch the two overlap, and the extraction itself uses every core. The writer
//! still sees the events one by one in position order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use event_log::{Event, Operation};
use fhir_core::search::IndexEntry;

use crate::store::{IndexError, Result};

/// Events extracted per unit of work handed to a thread.
const CHUNK: usize = 64;
/// Below this many events, threads cost more than they save.
const PARALLEL_FROM: usize = 2 * CHUNK;

/// The index values of one event (none for a delete).
pub(crate) fn entries_of(event: &Event) -> Result<Vec<IndexEntry>> {
    if event.operation == Operation::Delete {
        return Ok(Vec::new());
    }
    let resource: serde_json::Value = serde_json::from_slice(&event.body).map_err(|_| IndexError::BadBody(event.position))?;
    Ok(fhir_core::search::extract::extract(&resource))
}

/// Calls `write` for every event in order with its values, extracting ahead on other threads.
/// Stops at the first error, of extraction or of `write`.
pub(crate) fn for_each_extracted(events: &[Event], mut write: impl FnMut(&Event, &[IndexEntry]) -> Result<()>) -> Result<()> {
    if events.len() < PARALLEL_FROM {
        for event in events {
            write(event, &entries_of(event)?)?;
        }
        return Ok(());
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let chunks = events.len().div_ceil(CHUNK);
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        // Bounded, so that a slow writer holds the extracted values of a few chunks, not the batch.
        let (sender, receiver) = mpsc::sync_channel::<(usize, Result<Vec<Vec<IndexEntry>>>)>(workers * 4);
        for _ in 0..workers {
            let (sender, next) = (sender.clone(), &next);
            scope.spawn(move || loop {
                let chunk = next.fetch_add(1, Ordering::Relaxed);
                if chunk >= chunks {
                    return;
                }
                let slice = &events[chunk * CHUNK..((chunk + 1) * CHUNK).min(events.len())];
                let extracted = slice.iter().map(entries_of).collect::<Result<Vec<_>>>();
                // The writer stopped (an error): nothing more is wanted.
                if sender.send((chunk, extracted)).is_err() {
                    return;
                }
            });
        }
        drop(sender);
        let written = write_in_order(events, &receiver, chunks, &mut write);
        // Workers blocked on a full channel see it closed and stop; the scope then joins them.
        drop(receiver);
        written
    })
}

fn write_in_order(
    events: &[Event],
    receiver: &mpsc::Receiver<(usize, Result<Vec<Vec<IndexEntry>>>)>,
    chunks: usize,
    write: &mut impl FnMut(&Event, &[IndexEntry]) -> Result<()>,
) -> Result<()> {
    let mut waiting: BTreeMap<usize, Vec<Vec<IndexEntry>>> = BTreeMap::new();
    for chunk in 0..chunks {
        let extracted = loop {
            if let Some(extracted) = waiting.remove(&chunk) {
                break extracted;
            }
            let Ok((arrived, extracted)) = receiver.recv() else {
                return Err(IndexError::Worker);
            };
            waiting.insert(arrived, extracted?);
        };
        let slice = &events[chunk * CHUNK..((chunk + 1) * CHUNK).min(events.len())];
        for (event, entries) in slice.iter().zip(&extracted) {
            write(event, entries)?;
        }
    }
    Ok(())
}

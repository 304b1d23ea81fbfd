//! Answers kept for the next identical query (`[sql] result_cache`).
//!
//! An answer depends on the query's text, the commit it reads, the namespace unqualified
//! names resolve in, how strings are read, and what the acting principal may read. A commit
//! never changes: it names each table's metadata file, which names data files that are never
//! rewritten. So an answer kept under all of these ([`AnswerKey`]) is never stale: a new
//! commit on the branch is a new key (invalidated by construction), and the old answers
//! leave as newer ones need the room (least recently used first) or after ten idle minutes.
//!
//! Only an answer that is the same every time is kept (the session decides, in
//! `session/answers.rs`; it builds the key too): every function in the query immutable (not
//! `now()`, `random()`, `uuid()`), no change feed (`table_changes`), no table of files added
//! in place (other tools own those files), not an `EXPLAIN`. It is kept once its stream
//! has ended without an error, whole: a client that stops reading, a time limit or an error
//! leave nothing. An answer over an eighth of the
//! cache is not kept, so that one query cannot push all the others out.
//!
//! A door opts in per session ([`crate::Session::with_result_cache`]): the HTTP query door
//! (the console, `--remote`) and MCP's `query`. Pipelines, functions and the CLI's own
//! process do not: their answers are read once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::StreamExt;

use crate::results::RecordBatchStream;

/// `[sql] result_cache` unless set: the bytes of answers a process keeps.
pub const RESULT_CACHE: u64 = 64 << 20;

/// An answer unread this long is let go.
const IDLE: Duration = Duration::from_secs(600);

/// What an answer depends on besides the data of its commit.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct AnswerKey {
    pub commit: String,
    pub namespace: String,
    pub string_views: bool,
    /// The acting principal and its grants, when a door restricted it: a principal that may
    /// read less must not be handed an answer over tables it may not read.
    pub reader: Option<String>,
    pub sql: String,
}

/// A kept answer.
struct Answer {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    /// The batches' buffers, whole (even where a batch is a slice of a larger one, since the
    /// slice holds all of it), counted as they came.
    bytes: u64,
}

/// The answers a process keeps (`[sql] result_cache` bytes; 0 keeps none), and what it did.
pub struct ResultCache {
    answers: Option<moka::future::Cache<AnswerKey, Arc<Answer>>>,
    limit: u64,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Answers not kept for their size (over an eighth of the cache).
    too_big: AtomicU64,
}

/// What the result cache holds and has done (for metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResultCacheStats {
    /// `[sql] result_cache`.
    pub limit: u64,
    pub bytes: u64,
    pub answers: u64,
    pub hits: u64,
    pub misses: u64,
    pub too_big: u64,
}

impl ResultCache {
    /// A cache of at most `limit` bytes of answers; 0 keeps none.
    pub(crate) fn new(limit: u64) -> Self {
        let answers = (limit > 0).then(|| {
            moka::future::Cache::builder()
                .max_capacity(limit)
                .weigher(|key: &AnswerKey, answer: &Arc<Answer>| {
                    u32::try_from(weight(key, answer)).unwrap_or(u32::MAX)
                })
                .time_to_idle(IDLE)
                .build()
        });
        Self {
            answers,
            limit,
            hits: AtomicU64::default(),
            misses: AtomicU64::default(),
            too_big: AtomicU64::default(),
        }
    }

    /// The kept answer to `key`'s query, as a stream, with its schema.
    pub(crate) async fn get(&self, key: &AnswerKey) -> Option<(SchemaRef, RecordBatchStream)> {
        let answers = self.answers.as_ref()?;
        let Some(answer) = answers.get(key).await else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        self.hits.fetch_add(1, Ordering::Relaxed);
        let batches = answer.batches.clone().into_iter().map(Ok);
        Some((
            answer.schema.clone(),
            futures::stream::iter(batches).boxed(),
        ))
    }

    /// `batches`, passed on as they come and kept under `key` once they have all come
    /// without an error (see the module's documentation).
    pub(crate) fn fill(
        self: &Arc<Self>,
        key: AnswerKey,
        schema: SchemaRef,
        batches: RecordBatchStream,
    ) -> RecordBatchStream {
        if self.answers.is_none() {
            return batches;
        }
        let filling = Filling {
            cache: self.clone(),
            key,
            answer: Answer {
                schema,
                batches: Vec::new(),
                bytes: 0,
            },
        };
        futures::stream::unfold(
            (batches, Some(filling)),
            |(mut batches, mut filling)| async move {
                match batches.next().await {
                    Some(Ok(batch)) => {
                        if let Some(f) = &mut filling
                            && !f.add(&batch)
                        {
                            filling = None;
                        }
                        Some((Ok(batch), (batches, filling)))
                    }
                    Some(Err(e)) => Some((Err(e), (batches, None))),
                    None => {
                        if let Some(f) = filling {
                            f.keep().await;
                        }
                        None
                    }
                }
            },
        )
        // Ended for good: polled again after its end, `unfold` would panic.
        .fuse()
        .boxed()
    }

    pub fn stats(&self) -> ResultCacheStats {
        // Counted as of the cache's last upkeep (a few writes or reads ago).
        let (bytes, answers) = self
            .answers
            .as_ref()
            .map_or((0, 0), |a| (a.weighted_size(), a.entry_count()));
        ResultCacheStats {
            limit: self.limit,
            bytes,
            answers,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            too_big: self.too_big.load(Ordering::Relaxed),
        }
    }
}

/// An answer on its way to the cache.
struct Filling {
    cache: Arc<ResultCache>,
    key: AnswerKey,
    answer: Answer,
}

impl Filling {
    /// Adds `batch`, compacted; `false` once the answer is too big to keep.
    fn add(&mut self, batch: &RecordBatch) -> bool {
        let batch = crate::results::compact(batch);
        self.answer.bytes += batch.get_array_memory_size() as u64;
        if self.answer.bytes > self.cache.limit / 8 {
            self.cache.too_big.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.answer.batches.push(batch);
        true
    }

    async fn keep(self) {
        if let Some(answers) = &self.cache.answers {
            answers.insert(self.key, Arc::new(self.answer)).await;
        }
    }
}

/// An answer's weight against the cache's bytes: its buffers and its key.
fn weight(key: &AnswerKey, answer: &Answer) -> u64 {
    let text = key.sql.len() + key.commit.len() + key.namespace.len();
    answer.bytes + (text + key.reader.as_ref().map_or(0, String::len)) as u64
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, Int64Array, StringViewArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use basin_core::Error;

    use super::*;

    fn key(sql: &str) -> AnswerKey {
        AnswerKey {
            commit: "c1".into(),
            namespace: "default".into(),
            string_views: true,
            reader: None,
            sql: sql.into(),
        }
    }

    fn rows(n: i64) -> RecordBatch {
        let column: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n));
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)])),
            vec![column],
        )
        .expect("batch")
    }

    /// Fills the cache from `batches`, read to their end.
    async fn fill(cache: &Arc<ResultCache>, sql: &str, batches: Vec<Result<RecordBatch, Error>>) {
        let schema = rows(0).schema();
        let stream = futures::stream::iter(batches).boxed();
        let passed: Vec<_> = cache.fill(key(sql), schema, stream).collect().await;
        assert!(!passed.is_empty());
    }

    #[tokio::test]
    async fn an_answer_of_no_batches_ends_and_stays_ended() {
        // The HTTP door reads a first batch, then the rest: without one, `unfold` was polled
        // after its end and panicked, which dropped the reader's connection (TPC-H q11 at
        // scale 10 has no rows).
        let cache = Arc::new(ResultCache::new(64 << 10));
        let empty = futures::stream::iter(Vec::<Result<RecordBatch, Error>>::new()).boxed();
        let mut answer = cache.fill(key("none"), rows(0).schema(), empty);
        assert!(answer.next().await.is_none());
        assert!(answer.next().await.is_none());
        let (_, kept) = cache
            .get(&key("none"))
            .await
            .expect("an empty answer is kept");
        assert_eq!(kept.collect::<Vec<_>>().await.len(), 0);
    }

    #[tokio::test]
    async fn an_answer_is_kept_only_whole_without_an_error_and_within_an_eighth() {
        let cache = Arc::new(ResultCache::new(64 << 10));
        fill(&cache, "small", vec![Ok(rows(10)), Ok(rows(20))]).await;
        let (_, kept) = cache.get(&key("small")).await.expect("kept");
        let kept: Vec<_> = kept.collect().await;
        let counts: Vec<usize> = kept
            .iter()
            .map(|b| b.as_ref().unwrap().num_rows())
            .collect();
        assert_eq!(counts, [10, 20]);

        // 2,000 values of 8 bytes: past an eighth of 64 KiB.
        fill(&cache, "big", vec![Ok(rows(1000)), Ok(rows(1000))]).await;
        assert!(cache.get(&key("big")).await.is_none());
        assert_eq!(cache.stats().too_big, 1);

        let failed = Err(Error::internal("the disk went away"));
        fill(&cache, "failed", vec![Ok(rows(1)), failed, Ok(rows(1))]).await;
        assert!(cache.get(&key("failed")).await.is_none());

        // A reader that stops early leaves nothing.
        let stream = futures::stream::iter(vec![Ok(rows(1)), Ok(rows(2))]).boxed();
        let mut partial = cache.fill(key("partial"), rows(0).schema(), stream);
        assert!(partial.next().await.is_some());
        drop(partial);
        assert!(cache.get(&key("partial")).await.is_none());

        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (1, 3), "{stats:?}");
    }

    /// Two strings that point into a megabyte of others (as a decoded page's views do), and
    /// two numbers sliced from a million: kept, as what they hold.
    #[tokio::test]
    async fn an_answer_is_kept_as_its_own_values_not_the_buffers_it_points_into() {
        let cache = Arc::new(ResultCache::new(1 << 20));
        let long = |i: usize| format!("{i:0>100}");
        let strings = StringViewArray::from_iter_values((0..10_000).map(long)).slice(0, 2);
        let numbers = Int64Array::from_iter_values(0..1_000_000).slice(5, 2);
        let batch = RecordBatch::try_from_iter([
            ("s", Arc::new(strings) as ArrayRef),
            ("n", Arc::new(numbers) as ArrayRef),
        ])
        .expect("batch");
        assert!(batch.get_array_memory_size() > 1 << 20);
        let stream = futures::stream::iter(vec![Ok(batch.clone())]).boxed();
        let passed: Vec<_> = cache
            .fill(key("sliced"), batch.schema(), stream)
            .collect()
            .await;
        assert_eq!(passed.len(), 1);
        let (_, kept) = cache.get(&key("sliced")).await.expect("kept");
        let kept: Vec<_> = kept.collect().await;
        let kept = kept[0].as_ref().expect("batch");
        assert_eq!(kept, &batch);
        assert!(
            kept.get_array_memory_size() < 4096,
            "{}",
            kept.get_array_memory_size()
        );
    }

    #[tokio::test]
    async fn a_cache_of_no_bytes_keeps_nothing_and_counts_nothing() {
        let cache = Arc::new(ResultCache::new(0));
        fill(&cache, "small", vec![Ok(rows(10))]).await;
        assert!(cache.get(&key("small")).await.is_none());
        assert_eq!(cache.stats(), ResultCacheStats::default());
    }
}

//! Reading many records in one request: `BatchGetItem`, for a registry-wide round
//! ([`SharedState::load_many`](super::SharedState::load_many)).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use super::{
    BATCH_GET_ATTEMPTS, BATCH_GET_BACKOFF, BATCH_GET_MAX, DynamoDbStore, PK, StoreError,
    StoreErrorKind, StoredRecord, VERSION, classify, decode, other,
};

impl DynamoDbStore {
    /// `keys` by `BatchGetItem`, up to [`BATCH_GET_MAX`] keys a request, each request's
    /// `UnprocessedKeys` asked again up to [`BATCH_GET_ATTEMPTS`] times in all.
    pub(super) async fn get_many(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<StoredRecord>>, StoreError> {
        let now = self.now().as_secs();
        // Where each partition key's record goes (a key asked twice is read once:
        // `BatchGetItem` refuses duplicates).
        let mut wanted: HashMap<String, Vec<usize>> = HashMap::with_capacity(keys.len());
        let mut order = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let pk = self.partition_key(key);
            let slots = wanted.entry(pk.clone()).or_default();
            if slots.is_empty() {
                order.push(pk);
            }
            slots.push(i);
        }
        let mut records = vec![None; keys.len()];
        for chunk in order.chunks(BATCH_GET_MAX) {
            let mut pending: Vec<HashMap<String, AttributeValue>> = chunk
                .iter()
                .map(|pk| HashMap::from([(PK.to_owned(), AttributeValue::S(pk.clone()))]))
                .collect();
            let mut attempt = 0;
            while !pending.is_empty() {
                if attempt == BATCH_GET_ATTEMPTS {
                    return Err(StoreError::new(
                        StoreErrorKind::Unavailable,
                        format!(
                            "BatchGetItem: {} keys still unprocessed after {BATCH_GET_ATTEMPTS} attempts",
                            pending.len()
                        ),
                    ));
                }
                if attempt > 0 {
                    tokio::time::sleep(BATCH_GET_BACKOFF * 2u32.pow(attempt - 1)).await;
                }
                attempt += 1;
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .map_err(|_| other("BatchGetItem: invalid request"))?;
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| classify("BatchGetItem", &e))?;
                for item in output
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    // Only keys this call asked for, each once; anything else is ignored.
                    let Some(AttributeValue::S(pk)) = item.get(PK) else {
                        continue;
                    };
                    let Some(slots) = wanted.remove(pk) else {
                        continue;
                    };
                    let record = batch_record(item, now);
                    for i in slots {
                        records[i].clone_from(&record);
                    }
                }
                if let Some(unprocessed) = output
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                {
                    // At most the keys of this chunk, asked again (others are ignored).
                    pending = unprocessed
                        .keys
                        .into_iter()
                        .filter(|k| {
                            matches!(k.get(PK), Some(AttributeValue::S(pk)) if wanted.contains_key(pk))
                        })
                        .take(chunk.len())
                        .collect();
                }
            }
        }
        Ok(records)
    }
}

/// A record read by `BatchGetItem`: `None` when expired; when the item cannot be
/// decoded, its version with an empty body if the version can be read, else `None`.
fn batch_record(mut item: HashMap<String, AttributeValue>, now: u64) -> Option<StoredRecord> {
    let version = item.get(VERSION).cloned();
    match decode(std::mem::take(&mut item)) {
        Ok((record, expires_at)) => (expires_at > now).then_some(record),
        Err(_) => match version {
            Some(AttributeValue::N(n)) => {
                n.parse::<u64>()
                    .ok()
                    .filter(|v| *v > 0)
                    .map(|version| StoredRecord {
                        version,
                        body: Vec::new(),
                    })
            }
            _ => None,
        },
    }
}

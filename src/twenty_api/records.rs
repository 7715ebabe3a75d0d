//! Records, for reconciliation: the workspace's objects, and one page of changed rows.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::client::{ApiError, TwentyApi};

/// An object as the metadata API names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub singular: String,
    pub plural: String,
    pub metadata_id: Option<String>,
}

/// One page of rows, and where the next one starts.
#[derive(Debug)]
pub struct Page {
    pub rows: Vec<Box<RawValue>>,
    /// How many rows the filter matches in all, when Twenty says.
    pub total: Option<u64>,
    pub end_cursor: Option<String>,
    pub has_next: bool,
}

/// A list request: `filter` and `order_by` in Twenty's syntax.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub plural: &'a str,
    pub filter: String,
    pub order_by: &'a str,
    pub limit: u32,
    pub cursor: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListBody {
    data: HashMap<String, Vec<Box<RawValue>>>,
    page_info: Option<PageInfo>,
    total_count: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageInfo {
    end_cursor: Option<String>,
    #[serde(default)]
    has_next_page: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MetadataData {
    Wrapped { objects: Vec<ObjectMeta> },
    List(Vec<ObjectMeta>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectMeta {
    id: Option<String>,
    name_singular: String,
    name_plural: String,
    #[serde(default = "yes")]
    is_active: bool,
    #[serde(default)]
    is_system: bool,
}

fn yes() -> bool {
    true
}

impl TwentyApi {
    /// The workspace's objects, each with whether it is reconciled by default (active,
    /// and not a system object).
    pub async fn objects(&self, deadline: Instant) -> Result<Vec<(Object, bool)>, ApiError> {
        #[derive(Deserialize)]
        struct Body {
            data: MetadataData,
        }
        let text = self
            .get("/rest/metadata/objects", &[], "the object list", deadline)
            .await?;
        let body: Body = serde_json::from_str(&text)
            .map_err(|e| ApiError::NotTwenty(format!("the object list: {e}")))?;
        let objects = match body.data {
            MetadataData::Wrapped { objects } | MetadataData::List(objects) => objects,
        };
        Ok(objects
            .into_iter()
            .map(|o| {
                let default = o.is_active && !o.is_system;
                let object = Object {
                    singular: o.name_singular,
                    plural: o.name_plural,
                    metadata_id: o.id,
                };
                (object, default)
            })
            .collect())
    }

    pub async fn page(&self, query: &Query<'_>, deadline: Instant) -> Result<Page, ApiError> {
        let limit = query.limit.to_string();
        let mut params = vec![
            ("filter", query.filter.as_str()),
            ("order_by", query.order_by),
            ("limit", limit.as_str()),
        ];
        if let Some(cursor) = query.cursor {
            params.push(("starting_after", cursor));
        }
        let path = format!("/rest/{}", query.plural);
        let what = format!("the list of {}", query.plural);
        let text = match self.get(&path, &params, &what, deadline).await {
            Err(ApiError::Refused {
                status: 400,
                message,
                ..
            }) if message.contains("not found") => {
                return Err(ApiError::UnknownObject(query.plural.to_owned()));
            }
            other => other?,
        };
        let mut body: ListBody =
            serde_json::from_str(&text).map_err(|e| ApiError::NotTwenty(format!("{what}: {e}")))?;
        let rows = body.data.remove(query.plural).ok_or_else(|| {
            ApiError::NotTwenty(format!("{what}: no `data.{}` in the answer", query.plural))
        })?;
        let info = body.page_info.unwrap_or(PageInfo {
            end_cursor: None,
            has_next_page: false,
        });
        Ok(Page {
            rows,
            total: body.total_count,
            has_next: info.has_next_page && info.end_cursor.is_some(),
            end_cursor: info.end_cursor,
        })
    }
}

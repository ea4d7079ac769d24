//! Whether the API server streams initial lists (`sendInitialEvents`, the
//! WatchList feature, on by default since Kubernetes 1.32 and off where a
//! cluster turns it off). A streamed list arrives as watch events one object
//! at a time, with no list body to decode whole; paged lists are the fallback.

use kube::Client;
use kube::client::Body;

/// Asks once, with a watch of `collection` (an API path such as
/// `/apis/arcadia.cloud/v1alpha1/drifts`) that requests the initial events:
/// a server without the feature refuses it.
pub async fn streams_lists(client: &Client, collection: &str) -> bool {
    let uri = format!(
        "{collection}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1"
    );
    let Ok(request) = http::Request::get(uri).body(Body::empty()) else { return false };
    match client.send(request).await {
        // The stream itself is not read: its status answers the question.
        Ok(response) => response.status().is_success(),
        Err(error) => {
            tracing::debug!(%error, "the API server refused a streaming list; using paged lists");
            false
        }
    }
}

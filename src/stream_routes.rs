//! Which Kinesis client each stream's calls go through, and how they name it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kinesis_fleet_types::StreamIdentifier;

use crate::error::{Error, Result};

/// A stream's Kinesis side: the identifier its calls name (with the ARN the
/// stream was named by) and the client they go through.
#[derive(Clone, Debug)]
pub(crate) struct StreamRoute {
    pub(crate) stream: StreamIdentifier,
    pub(crate) client: aws_sdk_kinesis::Client,
}

/// The route of each stream of a worker, by stream name: the application's
/// Kinesis client unless the stream was given its own (cross-account).
/// Cheap to clone; clones share the routes. A route outlives its stream's
/// removal from the set: the stream's leases are consumed until deleted.
#[derive(Clone, Debug)]
pub(crate) struct StreamRoutes {
    application: aws_sdk_kinesis::Client,
    routes: Arc<RwLock<HashMap<String, StreamRoute>>>,
}

impl StreamRoutes {
    /// No routes yet; streams without a client of their own use `application`.
    pub(crate) fn new(application: aws_sdk_kinesis::Client) -> Self {
        StreamRoutes {
            application,
            routes: Arc::default(),
        }
    }

    /// Routes `stream` through `client`, else the application's client.
    pub(crate) fn insert(&self, stream: StreamIdentifier, client: Option<aws_sdk_kinesis::Client>) {
        let client = client.unwrap_or_else(|| self.application.clone());
        self.routes
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(stream.name().to_owned(), StreamRoute { stream, client });
    }

    /// The route of the stream named `name`. A stream never inserted (a
    /// lease of a stream in no worker's set) goes by name through the
    /// application's client.
    ///
    /// Errors: [`Error::StreamNotFound`] for a name Kinesis cannot have.
    pub(crate) fn get(&self, name: &str) -> Result<StreamRoute> {
        let routes = self
            .routes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(route) = routes.get(name) {
            return Ok(route.clone());
        }
        let stream = StreamIdentifier::from_name(name).map_err(|_| Error::StreamNotFound {
            stream: name.to_owned(),
        })?;
        Ok(StreamRoute {
            stream,
            client: self.application.clone(),
        })
    }
}

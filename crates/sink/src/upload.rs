//! Storing one object: PutObject, or a multipart upload above a threshold.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use crate::error::{Error, Result};

/// Uploads objects to one bucket.
#[derive(Clone, Debug)]
pub(crate) struct Uploader {
    pub(crate) client: Client,
    pub(crate) bucket: String,
    pub(crate) multipart_threshold: usize,
    pub(crate) part_size: usize,
}

impl Uploader {
    /// Stores `body` at `key`, replacing any object there (a replay writes
    /// the same bytes).
    ///
    /// # Cancel safety
    /// A dropped future leaves either the old object or the new one whole
    /// (S3 writes are atomic); an unfinished multipart upload stays until the
    /// bucket's lifecycle rule for incomplete uploads removes it.
    pub(crate) async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<()> {
        if body.len() > self.multipart_threshold {
            return self.put_multipart(key, body, content_type).await;
        }
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.error("PutObject", key, e))?;
        Ok(())
    }

    async fn put_multipart(&self, key: &str, body: Bytes, content_type: &str) -> Result<()> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| self.error("CreateMultipartUpload", key, e))?;
        let Some(upload_id) = created.upload_id else {
            return Err(self.error(
                "CreateMultipartUpload",
                key,
                std::io::Error::other("no UploadId in the answer"),
            ));
        };
        let result = self.upload_parts(key, &upload_id, body).await;
        if result.is_err() {
            // Best effort: the error that matters is the part's.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    async fn upload_parts(&self, key: &str, upload_id: &str, body: Bytes) -> Result<()> {
        let mut parts = Vec::new();
        let mut offset = 0;
        let mut number = 1;
        while offset < body.len() {
            let end = (offset + self.part_size).min(body.len());
            let part = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(body.slice(offset..end)))
                .send()
                .await
                .map_err(|e| self.error("UploadPart", key, e))?;
            parts.push(
                CompletedPart::builder()
                    .set_e_tag(part.e_tag)
                    .part_number(number)
                    .build(),
            );
            offset = end;
            number += 1;
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.error("CompleteMultipartUpload", key, e))?;
        Ok(())
    }

    fn error(
        &self,
        operation: &'static str,
        key: &str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Upload {
            operation,
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            source: Box::new(source),
        }
    }
}

//! [`Compat`]: s3s-fs's `FileSystem` behind an `s3s::S3` that passes every
//! operation the suite uses to it, and supplies what AWS documents and s3s-fs
//! 0.14.1 does not do (its own behaviour, in brackets):
//!
//! - ListParts: each part's ETag (the quoted MD5 UploadPart answered), size and
//!   time, by part number, in pages of `max-parts` after `part-number-marker`,
//!   with `IsTruncated` and `NextPartNumberMarker` [no ETags, one unsorted page];
//! - 404 `NoSuchUpload` for ListParts, UploadPart, CompleteMultipartUpload and
//!   AbortMultipartUpload of an upload id that is not in progress for that
//!   bucket and key [200 with no parts; 403; 400 for an id that is no UUID];
//! - CompleteMultipartUpload refuses, before anything changes, parts out of
//!   order (`InvalidPartOrder`), parts not uploaded or with another ETag
//!   (`InvalidPart`) and parts but the last under 5 MiB (`EntityTooSmall`); the
//!   upload stays in progress [no ETag check; it deleted the upload id before
//!   checking]; after it, the parts the list left out are deleted;
//! - ListMultipartUploads: the bucket's uploads under `prefix`, by key then
//!   initiation, in pages of `max-uploads` after `key-marker`/`upload-id-marker`
//!   [501 NotImplemented].
//!
//! Signatures (s3s), storage, object reads and the completed object's ETag
//! (s3s-fs) are untouched. Completion and abort run one at a time, so two
//! racing completions of one upload see it in progress at most once.

use crate::disk::{self, Disk, PartFile};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Request, S3Response, S3Result, S3};
use s3s_fs::FileSystem;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
const MAX_PAGE: i32 = 1000;

pub struct Compat {
    fs: FileSystem,
    disk: Disk,
    /// Part file -> (size, mtime, ETag) as UploadPart answered, so ListParts and
    /// Complete need not hash the bytes again; checked against the file.
    etags: Mutex<HashMap<PathBuf, (u64, SystemTime, String)>>,
    finishing: tokio::sync::Mutex<()>,
}

fn internal(e: std::io::Error) -> S3Error {
    s3_error!(e, InternalError)
}

fn no_such_upload() -> S3Error {
    s3_error!(
        NoSuchUpload,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
    )
}

/// Passes each listed operation to s3s-fs unchanged; the rest are ours.
macro_rules! s3_impl {
    (delegate { $($op:ident: $input:ident => $output:ident,)* } $($own:tt)*) => {
        #[async_trait::async_trait]
        impl S3 for Compat {
            $(
                async fn $op(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.fs.$op(req).await
                }
            )*
            $($own)*
        }
    };
}

impl Compat {
    pub fn new(root: &Path) -> Result<Self, Box<dyn std::error::Error>> {
        Ok(Self {
            fs: FileSystem::new(root).map_err(|e| format!("s3s-fs: {e:?}"))?,
            disk: Disk::new(root)?,
            etags: Mutex::default(),
            finishing: tokio::sync::Mutex::default(),
        })
    }

    fn check_upload(&self, bucket: &str, key: &str, upload_id: &str) -> S3Result<()> {
        if self.disk.upload_exists(bucket, key, upload_id) {
            Ok(())
        } else {
            Err(no_such_upload())
        }
    }

    /// The part's ETag, unquoted: as UploadPart answered it, else its bytes' MD5.
    async fn part_etag(&self, part: &PartFile) -> S3Result<String> {
        let known = self.etags.lock().unwrap().get(&part.path).cloned();
        match known {
            Some((size, modified, etag)) if size == part.size && modified == part.modified => {
                Ok(etag)
            }
            _ => disk::md5_hex(&part.path).await.map_err(internal),
        }
    }

    /// What AWS checks before it completes, in its order (the list's order, then
    /// each part, then the sizes), checked before s3s-fs changes anything.
    async fn check_completion(&self, input: &CompleteMultipartUploadInput) -> S3Result<()> {
        let given = input
            .multipart_upload
            .as_ref()
            .and_then(|m| m.parts.as_deref())
            .unwrap_or_default();
        let numbers = given
            .iter()
            .map(|p| {
                p.part_number
                    .ok_or_else(|| s3_error!(InvalidPart, "A part has no part number."))
            })
            .collect::<S3Result<Vec<i32>>>()?;
        if numbers.windows(2).any(|w| w[0] >= w[1]) {
            return Err(s3_error!(
                InvalidPartOrder,
                "The list of parts was not in ascending order. The parts list must be specified in order by part number."
            ));
        }
        let stored: HashMap<i32, PartFile> = self
            .disk
            .parts(&input.upload_id)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|p| (p.number, p))
            .collect();
        for (part, n) in given.iter().zip(&numbers) {
            let given_etag = part.e_tag.as_ref().map(|e| e.value().trim_matches('"'));
            let matches = match stored.get(n) {
                Some(s) => given_etag == Some(self.part_etag(s).await?.as_str()),
                None => false,
            };
            if !matches {
                return Err(s3_error!(
                    InvalidPart,
                    "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."
                ));
            }
        }
        let all_but_last = &numbers[..numbers.len().saturating_sub(1)];
        if all_but_last.iter().any(|n| stored[n].size < MIN_PART_SIZE) {
            return Err(s3_error!(
                EntityTooSmall,
                "Your proposed upload is smaller than the minimum allowed size"
            ));
        }
        // s3s-fs concatenates parts 1..n only, and fails on a gap with the upload gone.
        if numbers.iter().zip(1..).any(|(&n, i)| n != i) {
            return Err(s3_error!(
                NotImplemented,
                "s3s-fs completes parts numbered 1..n without gaps only"
            ));
        }
        Ok(())
    }

    /// After a completion or abort: no part files or cached ETags left behind.
    async fn forget(&self, upload_id: &str) {
        for part in self.disk.parts(upload_id).await.unwrap_or_default() {
            let _ = tokio::fs::remove_file(&part.path).await;
        }
        let prefix = format!(".upload_id-{upload_id}.part-");
        self.etags.lock().unwrap().retain(|path, _| {
            !path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        });
    }
}

s3_impl! {
    delegate {
        create_bucket: CreateBucketInput => CreateBucketOutput,
        delete_bucket: DeleteBucketInput => DeleteBucketOutput,
        head_bucket: HeadBucketInput => HeadBucketOutput,
        list_buckets: ListBucketsInput => ListBucketsOutput,
        get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput,
        put_object: PutObjectInput => PutObjectOutput,
        get_object: GetObjectInput => GetObjectOutput,
        head_object: HeadObjectInput => HeadObjectOutput,
        copy_object: CopyObjectInput => CopyObjectOutput,
        delete_object: DeleteObjectInput => DeleteObjectOutput,
        delete_objects: DeleteObjectsInput => DeleteObjectsOutput,
        list_objects: ListObjectsInput => ListObjectsOutput,
        list_objects_v2: ListObjectsV2Input => ListObjectsV2Output,
        create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput,
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let input = &req.input;
        self.check_upload(&input.bucket, &input.key, &input.upload_id)?;
        let path = self.disk.part_path(&input.upload_id, input.part_number);
        let res = self.fs.upload_part(req).await?;
        if let (Some(etag), Ok(meta)) = (res.output.e_tag.as_ref(), tokio::fs::metadata(&path).await) {
            let entry = (meta.len(), meta.modified().map_err(internal)?, etag.value().to_string());
            self.etags.lock().unwrap().insert(path, entry);
        }
        Ok(res)
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        self.check_upload(&input.bucket, &input.key, &input.upload_id)?;
        let marker = input.part_number_marker.unwrap_or(0);
        let max = input.max_parts.unwrap_or(MAX_PAGE).clamp(0, MAX_PAGE);
        let mut rest = self.disk.parts(&input.upload_id).await.map_err(internal)?;
        rest.retain(|p| p.number > marker);
        let is_truncated = rest.len() > max as usize;
        let mut parts = Vec::new();
        for p in rest.iter().take(max as usize) {
            parts.push(Part {
                e_tag: Some(ETag::Strong(self.part_etag(p).await?)),
                last_modified: Some(p.modified.into()),
                part_number: Some(p.number),
                size: Some(i64::try_from(p.size).unwrap_or(i64::MAX)),
                ..Default::default()
            });
        }
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: parts.last().and_then(|p| p.part_number),
            is_truncated: Some(is_truncated),
            parts: Some(parts),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let _one_at_a_time = self.finishing.lock().await;
        let input = &req.input;
        self.check_upload(&input.bucket, &input.key, &input.upload_id)?;
        self.check_completion(input).await?;
        let upload_id = input.upload_id.clone();
        let res = self.fs.complete_multipart_upload(req).await?;
        self.forget(&upload_id).await;
        Ok(res)
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let _one_at_a_time = self.finishing.lock().await;
        let input = &req.input;
        self.check_upload(&input.bucket, &input.key, &input.upload_id)?;
        let upload_id = input.upload_id.clone();
        let res = self.fs.abort_multipart_upload(req).await?;
        self.forget(&upload_id).await;
        Ok(res)
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        if input.delimiter.is_some() {
            return Err(s3_error!(NotImplemented, "s3s-compat lists multipart uploads without a delimiter only"));
        }
        if !self.disk.bucket_exists(&input.bucket) {
            return Err(s3_error!(NoSuchBucket, "The specified bucket does not exist"));
        }
        let prefix = input.prefix.clone().unwrap_or_default();
        let mut uploads = self.disk.uploads(&input.bucket).await.map_err(internal)?;
        uploads.retain(|u| u.key.starts_with(&prefix));
        uploads.sort_by(|a, b| (&a.key, a.initiated, &a.upload_id).cmp(&(&b.key, b.initiated, &b.upload_id)));
        // After key-marker; with upload-id-marker, after that upload of key-marker too
        // (when that upload has gone meanwhile: all of key-marker's, repeats over misses).
        let start = match (input.key_marker.as_deref(), input.upload_id_marker.as_deref()) {
            (None | Some(""), _) => 0,
            (Some(km), Some(im)) if !im.is_empty() => uploads
                .iter()
                .position(|u| u.key == km && u.upload_id == im)
                .map_or_else(|| uploads.partition_point(|u| u.key.as_str() < km), |i| i + 1),
            (Some(km), _) => uploads.partition_point(|u| u.key.as_str() <= km),
        };
        let max = input.max_uploads.unwrap_or(MAX_PAGE).clamp(0, MAX_PAGE) as usize;
        let rest = &uploads[start..];
        let page = &rest[..rest.len().min(max)];
        let last = page.last();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(max as i32),
            is_truncated: Some(rest.len() > page.len()),
            next_key_marker: last.map(|u| u.key.clone()),
            next_upload_id_marker: last.map(|u| u.upload_id.clone()),
            uploads: Some(
                page.iter()
                    .map(|u| MultipartUpload {
                        key: Some(u.key.clone()),
                        upload_id: Some(u.upload_id.clone()),
                        initiated: Some(u.initiated.into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }
}

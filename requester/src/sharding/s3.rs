//! Listing an S3 prefix into input files, with the requester's credentials.

use shoal_node::protocol::job::InputItem;
use shoal_publishers::s3::{self, ObjectInfo, Settings};

use super::ShardingError;
use super::list::InputFile;
use crate::spec::S3Input;

/// Every object under the prefix, named by its key after the prefix's last
/// `/` and identified by its ETag (which the nodes then insist on).
pub async fn list_s3(input: &S3Input) -> Result<Vec<InputFile>, ShardingError> {
    let settings = Settings {
        endpoint_url: input.endpoint_url.clone(),
        force_path_style: input.endpoint_url.is_some(),
        region: input.region.clone(),
        credentials: None,
    };
    let (client, credentials) = s3::connect(&settings).await;
    credentials.map_err(ShardingError::S3)?;
    let objects = s3::list_objects(&client, &input.bucket, &input.prefix)
        .await
        .map_err(|e| ShardingError::S3(e.to_string()))?;
    if objects.is_empty() {
        return Err(ShardingError::S3(format!(
            "no objects under s3://{}/{}",
            input.bucket, input.prefix
        )));
    }
    objects.into_iter().map(|o| input_file(input, o)).collect()
}

fn input_file(input: &S3Input, object: ObjectInfo) -> Result<InputFile, ShardingError> {
    let dir = input.prefix.rfind('/').map_or(0, |i| i + 1);
    let name = object.key[dir..].to_string();
    if name
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
        || name.contains('\0')
    {
        return Err(ShardingError::S3(format!(
            "key {:?} cannot be an input name (empty, `.` or `..` path segments)",
            object.key
        )));
    }
    let identity = format!("s3:{}:{}", object.etag, object.size);
    Ok(InputFile {
        item: InputItem::S3 {
            name,
            bucket: input.bucket.clone(),
            key: object.key,
            etag: object.etag,
            region: input.region.clone(),
        },
        identity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(prefix: &str) -> S3Input {
        S3Input {
            bucket: "b".into(),
            prefix: prefix.into(),
            region: None,
            endpoint_url: None,
        }
    }

    fn object(key: &str) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size: 3,
            etag: "abc".into(),
        }
    }

    #[test]
    fn names_are_keys_after_the_prefix_directory() {
        let f = input_file(&input("data/"), object("data/x/a.csv")).unwrap();
        assert_eq!(f.item.name(), "x/a.csv");
        let f = input_file(&input("data/part-"), object("data/part-1")).unwrap();
        assert_eq!(f.item.name(), "part-1");
        let f = input_file(&input(""), object("top.txt")).unwrap();
        assert_eq!(f.item.name(), "top.txt");
    }

    #[test]
    fn keys_that_make_bad_names_are_refused() {
        for key in ["data/../etc", "data//x", "data/./y"] {
            assert!(input_file(&input("data/"), object(key)).is_err(), "{key}");
        }
    }
}

//! Iceberg's own files (a table's metadata, manifest lists, manifests) read with a bound on
//! their size: `[sql] max_metadata_size`.
//!
//! iceberg-rust reads each of them whole into memory, and a metadata file that starts as
//! gzip does is gunzipped whole too. A file named by a client (a table registered over the
//! Iceberg REST door, a snapshot a commit adds) may be any file in the warehouse: a data
//! file of gigabytes, or ten megabytes of gzipped zeros that unpack to gigabytes. So each is
//! looked at (its size) before it is read, and a metadata file is gunzipped here, through a
//! reader that stops past the bound, instead of by iceberg-rust.
//!
//! Not bounded here: the blocks inside a manifest (Avro, which iceberg-rust decompresses
//! block by block as it reads) once the file itself passed.

use std::io::Read;

use basin_core::{Error, ErrorKind, Result};
use iceberg::TableIdent;
use iceberg::io::FileIO;
use iceberg::spec::TableMetadata;
use iceberg::table::Table;

use crate::error::from_iceberg;
use crate::warehouse::Warehouse;

/// The default of `[sql] max_metadata_size`.
pub const MAX_METADATA_SIZE: u64 = 256 << 20;

/// Refuses `path` when it is larger than `max` bytes.
pub(crate) async fn check_size(
    file_io: &FileIO,
    path: &str,
    max: u64,
    context: &str,
) -> Result<()> {
    let size = file_io
        .new_input(path)
        .map_err(from_iceberg(context))?
        .metadata()
        .await
        .map_err(from_iceberg(context))?
        .size;
    if size > max {
        return Err(too_large(context, path, size, max));
    }
    Ok(())
}

/// A table's metadata file at `location`, read and (when it is gzip) gunzipped within `max`
/// bytes.
pub(crate) async fn read_metadata(
    file_io: &FileIO,
    location: &str,
    max: u64,
    context: &str,
) -> Result<TableMetadata> {
    check_size(file_io, location, max, context).await?;
    let bytes = file_io
        .new_input(location)
        .map_err(from_iceberg(context))?
        .read()
        .await
        .map_err(from_iceberg(context))?;
    let json = if bytes.starts_with(&[0x1F, 0x8B]) {
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .take(max + 1)
            .read_to_end(&mut unpacked)
            .map_err(|e| Error::invalid(format!("{context}: {location} is not gzip: {e}")))?;
        if unpacked.len() as u64 > max {
            return Err(too_large(context, location, unpacked.len() as u64, max)
                .with_hint("a metadata file unpacks to more than the bound: it is not one"));
        }
        std::borrow::Cow::Owned(unpacked)
    } else {
        std::borrow::Cow::Borrowed(&bytes[..])
    };
    serde_json::from_slice(&json).map_err(|e| {
        Error::invalid(format!(
            "{context}: {location} is not an Iceberg table's metadata: {e}"
        ))
    })
}

/// The table `ident` as its metadata file at `location` describes it, read within `max`
/// bytes.
pub(crate) async fn read_table(
    warehouse: &Warehouse,
    ident: TableIdent,
    location: &str,
    max: u64,
) -> Result<Table> {
    let context = format!("cannot read the metadata of `{ident}` at {location}");
    let metadata = read_metadata(warehouse.file_io(), location, max, &context).await?;
    Table::builder()
        .identifier(ident)
        .metadata(metadata)
        .metadata_location(location)
        .file_io(warehouse.file_io().clone())
        .runtime(iceberg::Runtime::try_current().map_err(from_iceberg(&context))?)
        .build()
        .map_err(from_iceberg(&context))
}

fn too_large(context: &str, path: &str, size: u64, max: u64) -> Error {
    let size = basin_core::units::format_size(size);
    let max = basin_core::units::format_size(max);
    Error::new(
        ErrorKind::Limit,
        format!("{context}: {path} is {size}, past the limit of {max} (`[sql] max_metadata_size`)"),
    )
    .with_hint(
        "name the table's own metadata file, manifest list or manifest: these are small; the \
         server's operator may raise `[sql] max_metadata_size` for a table with a long history",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    async fn written(dir: &std::path::Path, name: &str, bytes: &[u8]) -> (FileIO, String) {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        (FileIO::new_with_fs(), path.display().to_string())
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[tokio::test]
    async fn a_file_past_the_bound_is_refused_before_it_is_read_or_unpacked() {
        let dir = std::env::temp_dir().join(format!("bounded-{}", basin_core::ids::random()));
        std::fs::create_dir_all(&dir).unwrap();
        let (io, big) = written(&dir, "big.json", &vec![b' '; 4096]).await;
        let e = check_size(&io, &big, 1024, "cannot load t")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Limit);
        assert!(e.message.contains("`[sql] max_metadata_size`"), "{e}");
        check_size(&io, &big, 4096, "cannot load t").await.unwrap();
        // Gzip of 4 MiB of zeros: a few KiB on disk, refused as it unpacks past the bound.
        let (io, bomb) = written(&dir, "bomb.json.gz", &gzip(&vec![0; 4 << 20])).await;
        let e = read_metadata(&io, &bomb, 1 << 20, "cannot load t")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Limit, "{e}");
        // Not metadata at all: a clear error, not a panic.
        let (io, text) = written(&dir, "text.json.gz", &gzip(b"hello")).await;
        let e = read_metadata(&io, &text, 1 << 20, "cannot load t")
            .await
            .unwrap_err();
        assert!(
            e.message.contains("is not an Iceberg table's metadata"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! What an import reads: files, folders, globs and `s3://` objects, with their formats.

use std::path::{Path, PathBuf};

use basin_core::{Error, Result};
use iceberg::io::FileIO;

/// A file format Basin imports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Json,
    Parquet,
    /// Arrow IPC files (Feather v2), e.g. a function's output.
    Arrow,
}

impl Format {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "csv" | "tsv" | "tbl" => Ok(Format::Csv),
            "json" | "jsonl" | "ndjson" => Ok(Format::Json),
            "parquet" | "pq" => Ok(Format::Parquet),
            "arrow" | "ipc" | "feather" | "arrows" => Ok(Format::Arrow),
            other => Err(Error::invalid(format!("unknown format `{other}`"))
                .with_hint("use one of: csv, json, parquet, arrow")),
        }
    }

    fn from_path(path: &str) -> Option<Self> {
        let ext = Path::new(path).extension()?.to_str()?;
        Format::parse(ext).ok()
    }
}

/// One input file, local (remote objects are first streamed into a temporary file).
#[derive(Debug)]
pub struct InputFile {
    /// How the user knows it: a path or URL, used in every message about it.
    pub display: String,
    pub path: PathBuf,
    pub format: Format,
    pub size: u64,
    /// When it was last written, as listed: with `size`, how a change while it is read is
    /// noticed.
    pub modified: Option<std::time::SystemTime>,
    /// Keeps a downloaded object's temporary file alive while it is read.
    _download: Option<tempfile::NamedTempFile>,
}

impl InputFile {
    /// A local file known to people as `display`.
    pub(crate) fn local(
        display: String,
        path: PathBuf,
        format: Format,
        meta: &std::fs::Metadata,
    ) -> Self {
        Self {
            display,
            path,
            format,
            size: meta.len(),
            modified: meta.modified().ok(),
            _download: None,
        }
    }
}

/// Expands `sources` into files, in a stable order.
pub async fn expand(
    sources: &[String],
    format: Option<Format>,
    s3: Option<&FileIO>,
) -> Result<Vec<InputFile>> {
    let mut files = Vec::new();
    for source in sources {
        if source.starts_with("s3://") {
            files.push(download(source, format, s3).await?);
            continue;
        }
        let paths: Vec<PathBuf> = if source.contains(['*', '?', '[']) {
            let mut found: Vec<PathBuf> = glob::glob(source)
                .map_err(|e| Error::invalid(format!("bad glob `{source}`: {e}")))?
                .filter_map(|p| p.ok())
                .filter(|p| p.is_file())
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(Error::not_found(format!("no file matches `{source}`")));
            }
            found
        } else {
            let path = PathBuf::from(source);
            if path.is_dir() {
                let mut found: Vec<PathBuf> = std::fs::read_dir(&path)
                    .map_err(|e| Error::io(format!("cannot list {source}")).with_source(e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.is_file()
                            && !p
                                .file_name()
                                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                    })
                    .filter(|p| {
                        format.is_some() || Format::from_path(&p.to_string_lossy()).is_some()
                    })
                    .collect();
                found.sort();
                if found.is_empty() {
                    return Err(Error::not_found(format!(
                        "`{source}` holds no CSV, JSON, Parquet or Arrow files"
                    ))
                    .with_hint(
                        "name the files, or pass --format to read files without those extensions",
                    ));
                }
                found
            } else if path.is_file() {
                vec![path]
            } else {
                return Err(
                    Error::not_found(format!("`{source}` does not exist")).with_hint(
                        "give a file, a folder, a glob like 'data/*.csv', or an s3:// URL",
                    ),
                );
            }
        };
        for path in paths {
            let display = path.display().to_string();
            let format = detect(&display, format)?;
            let meta = std::fs::metadata(&path)
                .map_err(|e| Error::io(format!("cannot read {display}")).with_source(e))?;
            files.push(InputFile::local(display, path, format, &meta));
        }
    }
    Ok(files)
}

fn detect(display: &str, format: Option<Format>) -> Result<Format> {
    format
        .or_else(|| Format::from_path(display))
        .ok_or_else(|| {
            Error::invalid(format!(
                "cannot tell the format of `{display}` from its name"
            ))
            .with_hint("pass --format csv, --format json or --format parquet")
        })
}

/// Streams an object into a temporary file, in bounded chunks.
async fn download(url: &str, format: Option<Format>, s3: Option<&FileIO>) -> Result<InputFile> {
    use std::io::Write;
    let format = detect(url, format)?;
    let s3 = s3.ok_or_else(|| {
        Error::invalid(format!("cannot read `{url}`: no S3 endpoint is configured"))
            .with_hint("set [s3] in basin.toml or BASIN_S3_ENDPOINT and the BASIN_S3_* keys")
    })?;
    let io_err = |e: iceberg::Error| {
        Error::io(format!("cannot read `{url}`: {}", e.message())).with_source(e)
    };
    let input = s3.new_input(url).map_err(io_err)?;
    let size = input.metadata().await.map_err(io_err)?.size;
    let reader = input.reader().await.map_err(io_err)?;
    let mut tmp = tempfile::NamedTempFile::new()
        .map_err(|e| Error::io("cannot create a temporary file").with_source(e))?;
    const CHUNK: u64 = 8 * 1024 * 1024;
    let mut offset = 0;
    while offset < size {
        let end = (offset + CHUNK).min(size);
        let bytes = reader.read(offset..end).await.map_err(io_err)?;
        tmp.write_all(&bytes)
            .map_err(|e| Error::io("cannot write a temporary file").with_source(e))?;
        offset = end;
    }
    tmp.flush()
        .map_err(|e| Error::io("cannot write a temporary file").with_source(e))?;
    let modified = tmp
        .as_file()
        .metadata()
        .ok()
        .and_then(|m| m.modified().ok());
    Ok(InputFile {
        display: url.to_string(),
        path: tmp.path().to_path_buf(),
        format,
        size,
        modified,
        _download: Some(tmp),
    })
}

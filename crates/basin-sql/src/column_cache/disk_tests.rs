//! The folder of kept columns ([`super::disk`]): what it writes reads back, and its bound.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow::array::{Array, Int64Array};
use arrow::datatypes::DataType;

use super::disk::Disk;
use super::parts::{Column, ColumnKey, FileKey, Layout};

fn key(i: usize) -> ColumnKey {
    ColumnKey {
        file: FileKey {
            store: "file:///".into(),
            path: format!("t/{i}.parquet"),
            size: 1000,
            modified: 7,
        },
        name: "id".into(),
        data_type: DataType::Int64,
        batch: 300,
    }
}

/// `rows` numbers in two row groups of two batches and one.
fn column(rows: i64) -> (Layout, Column) {
    let array = |from: i64, to: i64| Arc::new(Int64Array::from_iter_values(from..to)) as _;
    let half = rows / 2;
    let groups = vec![
        vec![array(0, half / 2), array(half / 2, half)],
        vec![array(half, rows)],
    ];
    let bytes = groups
        .iter()
        .flatten()
        .map(|a: &arrow::array::ArrayRef| a.get_array_memory_size() as u64)
        .sum();
    let layout = Layout {
        groups: vec![(4, half as usize), (900, (rows - half) as usize)],
    };
    (
        layout,
        Column {
            groups,
            stored: vec![11, 22],
            bytes,
        },
    )
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_kept_column_reads_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::open(dir.path(), 1 << 20).unwrap();
    assert!(disk.load(&key(0)).is_none());
    let (layout, written) = column(1000);
    disk.store(&key(0), &layout, &written);
    let (read_layout, read) = disk.load(&key(0)).expect("kept");
    assert_eq!(read_layout.groups, layout.groups);
    assert_eq!(read.stored, written.stored);
    assert_eq!(read.groups.len(), 2);
    for (read, written) in read
        .groups
        .iter()
        .flatten()
        .zip(written.groups.iter().flatten())
    {
        assert_eq!(read.to_data(), written.to_data());
    }
    // Another column (another type of the same file's `id`) is another file.
    let mut other = key(0);
    other.data_type = DataType::Int32;
    assert!(disk.load(&other).is_none());
    // So is the column cut in batches of another size (a kept scan zips batches).
    let mut other = key(0);
    other.batch = 100;
    assert!(disk.load(&other).is_none());
    let (_, _, loads, stores) = disk.counts();
    assert_eq!((stores, loads), (1, 1));
    assert!(Disk::open(dir.path(), 0).is_none());

    // One value changed on disk, or one byte of the footer (its list of blocks), the
    // file's length intact: its checksum no longer matches, so it is removed instead of
    // read.
    let path = disk.path(&key(0));
    let whole = std::fs::read(&path).unwrap();
    let value = whole
        .windows(8)
        .position(|w| w == 700i64.to_le_bytes())
        .unwrap();
    for at in [value, whole.len() - 40] {
        let mut bytes = whole.clone();
        bytes[at] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(disk.load(&key(0)).is_none(), "{at} of {}", whole.len());
        assert!(!path.exists());
    }
    std::fs::write(&path, &whole).unwrap();
    assert!(disk.load(&key(0)).is_some());
}

#[test]
fn the_least_recently_read_leave_first_and_big_ones_never_come() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, one) = column(1000);
    let probe = Disk::open(&dir.path().join("probe"), 1 << 20).unwrap();
    probe.store(&key(0), &layout, &one);
    probe.sweep();
    let size = probe.bytes();
    assert!(size > 8000, "{size}");
    // Room for four.
    let disk = Disk::open(dir.path(), 4 * size + size / 2).unwrap();
    for i in 0..4 {
        disk.store(&key(i), &layout, &one);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(disk.load(&key(0)).is_some());
    std::thread::sleep(Duration::from_millis(5));
    disk.store(&key(4), &layout, &one);
    let kept: Vec<bool> = (0..5).map(|i| disk.load(&key(i)).is_some()).collect();
    assert_eq!(kept, [true, false, true, true, true]);
    assert!(disk.bytes() <= 4 * size + size / 2, "{}", disk.bytes());
    // A column whose file would take over a quarter of the folder is not kept.
    let (layout, big) = column(3000);
    disk.store(&key(5), &layout, &big);
    assert!(disk.load(&key(5)).is_none());
    // A temporary file a process left an hour ago goes at the next sweep; one being
    // written now stays.
    let old = dir.path().join(".1-old.tmp");
    let new = dir.path().join(".2-new.tmp");
    for path in [&old, &new] {
        std::fs::write(path, b"half").unwrap();
    }
    let hours_ago = SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(hours_ago)
        .unwrap();
    disk.sweep();
    let names = files(dir.path());
    assert!(!names.contains(&".1-old.tmp".to_string()), "{names:?}");
    assert!(names.contains(&".2-new.tmp".to_string()), "{names:?}");
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".arrow")).count(),
        4,
        "{names:?}"
    );
}

//! A geo database is hostile input like any other: opened, then verified
//! whole before any address is looked up in it.

use std::path::Path;

use maxminddb::{Mmap, Reader};

use super::GeoError;

/// Opens a database and verifies the whole file (metadata, search tree,
/// data section) before anything looks an address up in it: maxminddb
/// panics on some corrupt trees, and a database is hostile input like any
/// other. The walk costs a few milliseconds on the demo files and seconds
/// on a full City database, once per start or reload.
pub(super) fn open(path: &Path) -> Result<Reader<Mmap>, GeoError> {
    // SAFETY: the file is mapped read-only. Operators replace databases by
    // atomic rename (documented), which leaves this mapping's inode intact.
    let reader = unsafe { Reader::open_mmap(path) }.map_err(|source| GeoError::Open {
        path: path.to_owned(),
        source,
    })?;
    let corrupt = |why: &str| GeoError::Corrupt {
        path: path.to_owned(),
        source: maxminddb::MaxMindDbError::invalid_database(why),
    };
    // The search tree must end in the 16 zero bytes that separate it from
    // the data: checked first and cheaply, because maxminddb's own walk of
    // a tree whose node count is wrong can run away with memory.
    let m = &reader.metadata;
    let tree_end = u64::from(m.node_count) * u64::from(m.record_size) / 4;
    let mut separator = [0xffu8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| {
            use std::io::{Read, Seek, SeekFrom};
            f.seek(SeekFrom::Start(tree_end))?;
            f.read_exact(&mut separator)
        })
        .map_err(|_| corrupt("node_count points past the end of the file"))?;
    if separator != [0u8; 16] {
        return Err(corrupt(
            "no data section separator where node_count says the tree ends",
        ));
    }
    // A panic inside the walk is a corrupt file too.
    let verified = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.verify()))
        .unwrap_or_else(|_| {
            Err(maxminddb::MaxMindDbError::invalid_database(
                "verification panicked",
            ))
        });
    verified.map_err(|source| GeoError::Corrupt {
        path: path.to_owned(),
        source,
    })?;
    Ok(reader)
}

//! Recorded metrics as the commands read them: a store directory, or
//! files and directories of files.

use std::path::Path;

use headroom_core::SampleFrame;

use crate::error::{Error, Result};
use crate::files::{FileOptions, read_files};
use crate::store::{Query, Store};

/// Every sample under `path`: a store directory holding at least one series
/// is read whole; anything else is read as files (`opts` say how).
pub fn load(path: &Path, opts: &FileOptions) -> Result<SampleFrame> {
    if path.is_dir()
        && let Ok(store) = Store::open(path)
        && store.list().is_ok_and(|keys| !keys.is_empty())
    {
        return store
            .read(&Query::default())
            .map_err(|source| Error::StoreRead { path: path.into(), source: Box::new(source) });
    }
    read_files(&[path.to_path_buf()], opts)
}

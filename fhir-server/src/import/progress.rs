//! What earlier runs of `import` finished, so that a re-run skips it: per input file (by content
//! hash), the units that committed completely. Saved after every unit by writing a new file
//! and renaming it over the old one, so an interrupted run leaves a readable record.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Progress {
    /// File hash -> indexes of its finished units.
    files: BTreeMap<String, BTreeSet<usize>>,
    #[serde(skip)]
    path: PathBuf,
}

impl Progress {
    pub fn load(path: &Path) -> anyhow::Result<Progress> {
        let mut progress: Progress = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("{} is not an import progress file", path.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Progress::default(),
            Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
        };
        progress.path = path.to_path_buf();
        Ok(progress)
    }

    pub fn is_done(&self, file: &str, unit: usize) -> bool {
        self.files.get(file).is_some_and(|units| units.contains(&unit))
    }

    pub fn mark_done(&mut self, file: &str, unit: usize) -> anyhow::Result<()> {
        self.files.entry(file.to_string()).or_default().insert(unit);
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let temporary = self.path.with_extension("tmp");
        std::fs::write(&temporary, serde_json::to_vec(self)?).with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, &self.path).with_context(|| format!("cannot replace {}", self.path.display()))?;
        Ok(())
    }
}

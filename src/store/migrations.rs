//! Each backend's schema history: one `.sql` file per step under
//! `migrations/sqlite/` and `migrations/postgres/`, named `NNNN_what.sql`, built
//! into the binary and applied in order at boot. A released step is never edited:
//! databases of every earlier version upgrade by running the steps they lack.
//!
//! Versions are the file numbers. SQLite records the last applied one in
//! `PRAGMA user_version`; PostgreSQL in `schema_migrations`, one row per step,
//! under an advisory lock so nodes booting together apply each step once.

/// The steps in `migrations/<dir>/`, in order; a test checks the list against the
/// folder, so a file left out of it (or named out of order) fails the build's tests.
macro_rules! steps {
    ($dir:literal: $($file:literal),* $(,)?) => {
        &[$(include_str!(concat!("migrations/", $dir, "/", $file, ".sql"))),*]
    };
}

pub const SQLITE: &[&str] = steps!("sqlite":
    "0001_core",
    "0002_webhook_delivery",
    "0003_object_index_keys",
    "0004_deliveries_at_commit",
    "0005_idempotency_in_order",
    "0006_index_key_text",
    "0007_scheduled_jobs",
);

pub const POSTGRES: &[&str] = steps!("postgres":
    "0001_core",
    "0002_webhook_delivery",
    "0003_toast_tuple_target",
    "0004_object_index_keys",
    "0005_deliveries_at_commit",
    "0006_collate_c",
    "0007_drop_objects_pkey",
    "0008_compressed_data",
    "0009_scheduled_jobs",
);

#[cfg(test)]
mod tests {
    /// The files of one backend's folder, sorted by name, with their text.
    fn folder(dir: &str) -> Vec<(String, String)> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/store/migrations")
            .join(dir);
        let mut files: Vec<(String, String)> = std::fs::read_dir(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
            .map(|entry| {
                let entry = entry.expect("a folder entry");
                let name = entry.file_name().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(entry.path()).expect("a migration's text");
                (name, text)
            })
            .collect();
        files.sort();
        files
    }

    /// Every file is a step, numbered from 1 without gaps, and the arrays hold
    /// exactly the folders' files in that order.
    #[test]
    fn the_arrays_are_the_folders() {
        for (dir, steps) in [("sqlite", super::SQLITE), ("postgres", super::POSTGRES)] {
            let files = folder(dir);
            assert_eq!(
                files.len(),
                steps.len(),
                "{dir}: a file is not in the array"
            );
            for (n, ((name, text), step)) in files.iter().zip(steps).enumerate() {
                let number = format!("{:04}_", n + 1);
                assert!(
                    name.starts_with(&number) && name.ends_with(".sql"),
                    "{dir}/{name} should be step {number}*.sql"
                );
                assert_eq!(text, step, "{dir}/{name} is not step {}", n + 1);
            }
        }
    }
}

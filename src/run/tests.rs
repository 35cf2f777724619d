use std::sync::atomic::{AtomicUsize, Ordering};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{Event, EventKind};

use super::*;

/// Sends a change at each of `at` (from now), then closes the channel.
fn changes_at(at: &[u64]) -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    let at = at.to_vec();
    tokio::spawn(async move {
        let start = Instant::now();
        for ms in at {
            tokio::time::sleep_until(start + Duration::from_millis(ms)).await;
            let _ = tx.send(());
        }
    });
    rx
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_changes_is_one_reload_after_the_file_goes_quiet() {
    let start = Instant::now();
    let mut rx = changes_at(&[0, 100, 200, 1000]);
    let quiet = Duration::from_millis(250);
    let max = Duration::from_secs(2);
    assert_eq!(next_burst(&mut rx, quiet, max).await, Some(()));
    // The last change of the burst came at 200 ms; quiet until 450 ms.
    assert_eq!(start.elapsed(), Duration::from_millis(450));
    assert_eq!(next_burst(&mut rx, quiet, max).await, Some(()));
    // A lone change, then the channel closes: no waiting for more.
    assert_eq!(start.elapsed(), Duration::from_millis(1000));
    assert_eq!(next_burst(&mut rx, quiet, max).await, None);
}

#[tokio::test(start_paused = true)]
async fn a_file_that_never_goes_quiet_is_reloaded_at_the_cap() {
    let start = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            if tx.send(()).is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let max = Duration::from_secs(2);
    next_burst(&mut rx, Duration::from_millis(250), max).await;
    assert_eq!(start.elapsed(), max);
}

fn dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "strangler-run-unit-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::canonicalize(d).unwrap()
}

fn event(kind: EventKind, path: PathBuf) -> Event {
    Event::new(kind).add_path(path)
}

#[test]
fn only_changes_to_the_config_file_count() {
    let d = dir();
    let file = d.join("strangler.toml");
    std::fs::write(&file, "").unwrap();
    let list = watch_list(&file).unwrap();
    assert_eq!(
        list,
        [Watched {
            dir: d.clone(),
            name: Some("strangler.toml".into())
        }]
    );
    let yes = [
        EventKind::Create(CreateKind::File),
        EventKind::Modify(ModifyKind::Any),
        EventKind::Modify(ModifyKind::Name(RenameMode::To)),
        EventKind::Modify(ModifyKind::Name(RenameMode::From)),
        EventKind::Access(AccessKind::Close(AccessMode::Write)),
        EventKind::Remove(notify::event::RemoveKind::File),
    ];
    for kind in yes {
        assert!(concerns(&event(kind, file.clone()), &list), "{kind:?}");
    }
    // Reading the file (every reload does) is no change.
    for kind in [
        EventKind::Access(AccessKind::Open(AccessMode::Any)),
        EventKind::Access(AccessKind::Close(AccessMode::Read)),
    ] {
        assert!(!concerns(&event(kind, file.clone()), &list), "{kind:?}");
    }
    // Another file in the same directory, e.g. an editor's swap file.
    let other = event(
        EventKind::Modify(ModifyKind::Any),
        d.join(".strangler.toml.swp"),
    );
    assert!(!concerns(&other, &list));
    // A rename of the editor's temp file onto the config: both paths given.
    let rename = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
        .add_path(d.join("strangler.toml.tmp"))
        .add_path(file.clone());
    assert!(concerns(&rename, &list));
    std::fs::remove_dir_all(&d).unwrap();
}

#[cfg(unix)]
#[test]
fn a_symlinked_config_watches_the_link_directory_whole_and_the_target() {
    let links = dir();
    let data = dir();
    let target = data.join("real.toml");
    std::fs::write(&target, "").unwrap();
    let link = links.join("strangler.toml");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let list = watch_list(&link).unwrap();
    assert_eq!(
        list,
        [
            Watched {
                dir: links.clone(),
                name: None
            },
            Watched {
                dir: data.clone(),
                name: Some("real.toml".into())
            },
        ]
    );
    // A ConfigMap-style swap renames `..data`, never touching the link.
    let swap = event(
        EventKind::Modify(ModifyKind::Name(RenameMode::To)),
        links.join("..data"),
    );
    assert!(concerns(&swap, &list));
    let edit = event(EventKind::Modify(ModifyKind::Any), target.clone());
    assert!(concerns(&edit, &list));
    let unrelated = event(EventKind::Modify(ModifyKind::Any), data.join("other.toml"));
    assert!(!concerns(&unrelated, &list));
    std::fs::remove_dir_all(&links).unwrap();
    std::fs::remove_dir_all(&data).unwrap();
}

#[test]
fn a_relative_path_watches_the_working_directory() {
    let list = watch_list(Path::new("Cargo.toml")).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].dir, std::env::current_dir().unwrap());
    assert!(watch_list(Path::new("no-such-dir/x.toml")).is_err());
}

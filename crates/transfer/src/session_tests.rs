use std::collections::BTreeMap;

use super::*;
use crate::codec::{decode_client, client};

/// In-memory files: committed ones by path, temporary ones by path too (at most one per path).
#[derive(Default)]
struct MemFs {
    files: BTreeMap<String, (Vec<u8>, i64)>,
    temps: BTreeMap<String, Vec<u8>>,
    fail_create: bool,
}

impl UploadFs for &mut MemFs {
    type File = String;
    fn existing(&mut self, path: &str) -> io::Result<Option<(u64, i64)>> {
        Ok(self.files.get(path).map(|(d, m)| (d.len() as u64, *m)))
    }
    fn create_temp(&mut self, path: &str) -> io::Result<String> {
        if self.fail_create {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        self.temps.insert(path.into(), Vec::new());
        Ok(path.into())
    }
    fn write(&mut self, file: &mut String, data: &[u8]) -> io::Result<()> {
        self.temps.get_mut(file.as_str()).unwrap().extend_from_slice(data);
        Ok(())
    }
    fn commit(&mut self, path: &str, file: String, mtime: i64) -> io::Result<()> {
        let data = self.temps.remove(&file).unwrap();
        self.files.insert(path.into(), (data, mtime));
        Ok(())
    }
    fn discard(&mut self, _path: &str, file: String) {
        self.temps.remove(&file);
    }
}

fn feed<F: UploadFs>(s: &mut Session<F>, frame: &[u8]) -> Result<Vec<ServerMessage>, SessionError> {
    s.handle(decode_client(frame).unwrap())?;
    Ok(s.take_messages())
}

use ServerMessage::{FilesCompleted as Done, Ok as OkMsg, Skip};

#[test]
fn folder_upload_then_resume_skips_complete_files() {
    let mut fs = MemFs::default();
    let listing = client::listing([(1, 3, 1000, "a.txt"), (2, 0, 2000, "d/empty"), (3, 4, 3000, "d/e/big")]);
    {
        let mut s = Session::new(&mut fs, Limits::default(), false);
        assert_eq!(feed(&mut s, &listing).unwrap(), vec![OkMsg(1), OkMsg(2), OkMsg(3)]);
        assert_eq!(feed(&mut s, &client::chunk(1, b"abc")).unwrap(), vec![Done(1)]);
        assert_eq!(feed(&mut s, &client::chunk(2, b"")).unwrap(), vec![Done(2)]);
        assert_eq!(feed(&mut s, &client::chunk(3, b"12")).unwrap(), vec![]);
        // The connection is cut half-way through file 3.
        s.abort();
    }
    assert_eq!(fs.files.keys().collect::<Vec<_>>(), ["a.txt", "d/empty"]);
    assert!(fs.temps.is_empty(), "temporary file of the cut transfer removed");
    assert_eq!(fs.files["a.txt"], (b"abc".to_vec(), 1000));
    // Resume: same listing; the two complete files are skipped, the third is sent again from the start.
    let mut s = Session::new(&mut fs, Limits::default(), false);
    assert_eq!(feed(&mut s, &listing).unwrap(), vec![Skip(1), Skip(2), OkMsg(3), Done(2)]);
    assert_eq!(feed(&mut s, &client::chunk(3, b"12")).unwrap(), vec![]);
    assert_eq!(feed(&mut s, &client::chunk(3, b"34")).unwrap(), vec![Done(3)]);
    assert!(s.all_done());
    drop(s);
    assert_eq!(fs.files["d/e/big"], (b"1234".to_vec(), 3000));
}

#[test]
fn skip_needs_same_size_and_mtime_within_a_minute() {
    let mut fs = MemFs::default();
    fs.files.insert("a".into(), (b"xx".to_vec(), 100_000));
    fs.files.insert("b".into(), (b"xx".to_vec(), 100_000));
    fs.files.insert("c".into(), (b"xx".to_vec(), 100_000));
    let mut s = Session::new(&mut fs, Limits::default(), false);
    let l = client::listing([(1, 2, 159_000, "a"), (2, 3, 100_000, "b"), (3, 2, 161_000, "c")]);
    assert_eq!(feed(&mut s, &l).unwrap(), vec![Skip(1), OkMsg(2), OkMsg(3), Done(1)]);
}

#[test]
fn open_files_are_bounded_and_freed_slots_are_reused() {
    let mut fs = MemFs::default();
    let limits = Limits { max_open_files: 2, ..Limits::default() };
    let mut s = Session::new(&mut fs, limits, false);
    let l = client::listing([(1, 1, 0, "a"), (2, 1, 0, "b"), (3, 1, 0, "c"), (4, 1, 0, "d")]);
    assert_eq!(feed(&mut s, &l).unwrap(), vec![OkMsg(1), OkMsg(2)]);
    assert_eq!(s.open_files(), 2);
    // A chunk for a file not yet OK'd is a protocol error.
    assert!(matches!(feed(&mut s, &client::chunk(3, b"x")), Err(SessionError::NotOpen(3))));
    assert_eq!(feed(&mut s, &client::chunk(2, b"x")).unwrap(), vec![OkMsg(3), Done(1)]);
    // The browser gives up on file 1: its slot goes to file 4.
    assert_eq!(feed(&mut s, &client::skip(1)).unwrap(), vec![OkMsg(4), Done(2)]);
    feed(&mut s, &client::chunk(3, b"x")).unwrap();
    assert_eq!(feed(&mut s, &client::chunk(4, b"x")).unwrap(), vec![Done(4)]);
    assert!(s.all_done());
    drop(s);
    assert_eq!(fs.files.keys().collect::<Vec<_>>(), ["b", "c", "d"]);
    assert!(fs.temps.is_empty());
}

#[test]
fn protocol_violations() {
    let mut fs = MemFs::default();
    let mut s = Session::new(&mut fs, Limits::default(), false);
    feed(&mut s, &client::listing([(1, 2, 0, "a")])).unwrap();
    assert!(matches!(feed(&mut s, &client::listing([(1, 2, 0, "b")])), Err(SessionError::DuplicateId(1))));
    assert!(matches!(feed(&mut s, &client::chunk(1, b"abc")), Err(SessionError::TooMuchData { id: 1, size: 2 })));
    feed(&mut s, &client::chunk(1, b"ab")).unwrap();
    assert!(matches!(feed(&mut s, &client::chunk(1, b"")), Err(SessionError::NotOpen(1))), "a finished file takes no more");
    // A folder session needs paths; a file session exactly one entry with none.
    assert!(matches!(feed(&mut s, &client::listing([(5, 0, 0, "")])), Err(SessionError::FileUploadShape)));
    let mut fs = MemFs::default();
    let mut s = Session::new(&mut fs, Limits::default(), true);
    assert!(matches!(feed(&mut s, &client::listing([(1, 0, 0, "x")])), Err(SessionError::FileUploadShape)));
    let mut s = Session::new(&mut fs, Limits::default(), true);
    assert!(matches!(feed(&mut s, &client::listing([(1, 0, 0, ""), (2, 0, 0, "")])), Err(SessionError::FileUploadShape)));
    let mut s = Session::new(&mut fs, Limits { max_files: 2, ..Limits::default() }, false);
    assert!(matches!(feed(&mut s, &client::listing([(1, 0, 0, "a"), (2, 0, 0, "b"), (3, 0, 0, "c")])), Err(SessionError::TooManyFiles(2))));
}

#[test]
fn file_upload_writes_the_target_itself() {
    let mut fs = MemFs::default();
    let mut s = Session::new(&mut fs, Limits::default(), true);
    assert_eq!(feed(&mut s, &client::listing([(0, 5, 42, "")])).unwrap(), vec![OkMsg(0)]);
    assert_eq!(feed(&mut s, &client::chunk(0, b"hello")).unwrap(), vec![Done(1)]);
    drop(s);
    assert_eq!(fs.files[""], (b"hello".to_vec(), 42));
}

#[test]
fn io_errors_name_the_path() {
    let mut fs = MemFs { fail_create: true, ..MemFs::default() };
    let mut s = Session::new(&mut fs, Limits::default(), false);
    let e = feed(&mut s, &client::listing([(1, 1, 0, "x/y")])).unwrap_err();
    assert!(e.to_string().starts_with("x/y: "), "{e}");
}

//! The server's side of the ABI (feature `host`): reading a library's descriptor without
//! running it, opening it, and calling a plugin through its function table; and the host
//! function table that forwards a plugin's calls to [`HostServices`].

use std::ffi::c_void;
use std::future::Future;
use std::mem::offset_of;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::output::answer;
use super::{ImportedFuture, catch, export_future};
use crate::abi::{
    self, CairnAggregateSpec, CairnArg, CairnEvent, CairnFunctionSpec, CairnFuture, CairnHost,
    CairnJobSpec, CairnOutput, CairnPluginDescriptor, CairnPluginVTable, CairnProcedureSpec,
    CairnStatus, CairnStr, CairnTableFunctionSpec, CairnValue, has_pointer_field,
};
use crate::{Args, Column, ColumnType, Outcome, PluginError, Reply, Value};

/// Why a library is not loaded. The messages follow PostgreSQL's "incompatible library":
/// what is wrong, the versions on each side, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read or opened as a shared library.
    #[error("cannot open plugin library {path}: {message}")]
    Open {
        /// The library.
        path: PathBuf,
        /// The system's reason.
        message: String,
    },
    /// The library exports no descriptor of any ABI major.
    #[error(
        "{path} is not a Cairn plugin: it exports no symbol `{symbol}`; build it with cairn-plugin-api's export_plugin! (or define `{symbol}` as in cairn_plugin.h)",
        symbol = abi::CAIRN_PLUGIN_SYMBOL
    )]
    NotAPlugin {
        /// The library.
        path: PathBuf,
    },
    /// The library exports a descriptor for another ABI major only.
    #[error(
        "incompatible library {path}: ABI major version mismatch; the server speaks ABI {host}.{host_minor}, the library was built for ABI {plugin}.x (it exports `cairn_plugin_v{plugin}`); rebuild the plugin against a cairn-plugin-api release for ABI {host}",
        host = abi::CAIRN_ABI_MAJOR, host_minor = abi::CAIRN_ABI_MINOR
    )]
    OtherMajor {
        /// The library.
        path: PathBuf,
        /// The major it was built for.
        plugin: u32,
    },
    /// The descriptor does not start with the magic number.
    #[error(
        "incompatible library {path}: `{symbol}` is not a Cairn plugin descriptor (magic number {found:#018x}, expected {expected:#018x}); the file is damaged or was not built with cairn-plugin-api",
        symbol = abi::CAIRN_PLUGIN_SYMBOL, expected = abi::CAIRN_PLUGIN_MAGIC
    )]
    BadMagic {
        /// The library.
        path: PathBuf,
        /// The first eight bytes found.
        found: u64,
    },
    /// The descriptor's header names another major than its symbol.
    #[error(
        "incompatible library {path}: its descriptor says ABI {plugin}.{plugin_minor} under the symbol for ABI {host}; the server speaks ABI {host}.{host_minor}; rebuild the plugin against a cairn-plugin-api release for ABI {host}",
        host = abi::CAIRN_ABI_MAJOR, host_minor = abi::CAIRN_ABI_MINOR
    )]
    MajorMismatch {
        /// The library.
        path: PathBuf,
        /// The major in the descriptor.
        plugin: u32,
        /// The minor in the descriptor.
        plugin_minor: u32,
    },
    /// The descriptor is shorter than ABI 1.0's.
    #[error(
        "incompatible library {path}: its descriptor is truncated ({size} bytes, ABI {major}.0 needs at least {needed}); the file is damaged or was built from a broken header",
        major = abi::CAIRN_ABI_MAJOR
    )]
    Truncated {
        /// The library.
        path: PathBuf,
        /// The size the descriptor declares.
        size: u32,
        /// The smallest valid size.
        needed: usize,
    },
    /// The plugin needs functions this server does not have yet.
    #[error(
        "incompatible library {path}: plugin `{name}` {version} needs a server with ABI {major}.{needs} or newer, this server speaks ABI {major}.{host}; upgrade Cairn or use an older build of the plugin",
        major = abi::CAIRN_ABI_MAJOR, host = abi::CAIRN_ABI_MINOR
    )]
    NeedsNewerHost {
        /// The library.
        path: PathBuf,
        /// The plugin's name.
        name: String,
        /// The plugin's version.
        version: String,
        /// The oldest host minor it accepts.
        needs: u32,
    },
    /// A field of the descriptor is unusable.
    #[error("invalid plugin descriptor in {path}: {what}")]
    Invalid {
        /// The library.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

impl LoadError {
    /// The same refusal, naming `library` (the file the operator knows) instead of the
    /// private copy that was read.
    pub fn for_file(mut self, library: &Path) -> LoadError {
        match &mut self {
            LoadError::Open { path, .. }
            | LoadError::NotAPlugin { path }
            | LoadError::OtherMajor { path, .. }
            | LoadError::BadMagic { path, .. }
            | LoadError::MajorMismatch { path, .. }
            | LoadError::Truncated { path, .. }
            | LoadError::NeedsNewerHost { path, .. }
            | LoadError::Invalid { path, .. } => *path = library.to_owned(),
        }
        self
    }
}

/// What a descriptor says about its plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorInfo {
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// What it does.
    pub description: String,
    /// The ABI major it was built for.
    pub abi_major: u32,
    /// The ABI minor it was built for.
    pub abi_minor: u32,
    /// The oldest host minor it accepts.
    pub min_host_minor: u32,
}

/// The fields every descriptor of this major starts with.
#[derive(Debug, Clone, Copy)]
struct Header {
    magic: u64,
    abi_major: u32,
    abi_minor: u32,
    min_host_minor: u32,
    size: u32,
}

impl Header {
    fn parse(bytes: &[u8]) -> Option<Header> {
        let u32_at = |at: usize| {
            bytes
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_ne_bytes)
        };
        Some(Header {
            magic: u64::from_ne_bytes(bytes.get(0..8)?.try_into().ok()?),
            abi_major: u32_at(8)?,
            abi_minor: u32_at(12)?,
            min_host_minor: u32_at(16)?,
            size: u32_at(20)?,
        })
    }

    /// The checks that need nothing but the header, in PostgreSQL's order: magic, then
    /// major, then size.
    fn check(&self, path: &Path) -> Result<(), LoadError> {
        if self.magic != abi::CAIRN_PLUGIN_MAGIC {
            return Err(LoadError::BadMagic {
                path: path.to_owned(),
                found: self.magic,
            });
        }
        if self.abi_major != abi::CAIRN_ABI_MAJOR {
            return Err(LoadError::MajorMismatch {
                path: path.to_owned(),
                plugin: self.abi_major,
                plugin_minor: self.abi_minor,
            });
        }
        if (self.size as usize) < size_of::<CairnPluginDescriptor>() {
            return Err(LoadError::Truncated {
                path: path.to_owned(),
                size: self.size,
                needed: size_of::<CairnPluginDescriptor>(),
            });
        }
        Ok(())
    }
}

/// The longest version and description a descriptor may carry.
const MAX_VERSION_LEN: usize = 64;
const MAX_DESCRIPTION_LEN: usize = 1024;

fn check_info(info: &DescriptorInfo, path: &Path) -> Result<(), LoadError> {
    let invalid = |what: String| LoadError::Invalid {
        path: path.to_owned(),
        what,
    };
    // The name becomes SQL (`CALL name.proc`), a config table and a log field.
    let name_ok = info.name.len() <= 63
        && info
            .name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && info
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !name_ok {
        return Err(invalid(format!(
            "the plugin's name {:?} is not an identifier: use lowercase letters, digits and _, starting with a letter or _, at most 63 bytes",
            info.name
        )));
    }
    // Shown in SHOW PLUGINS and logs: printable, one line, bounded.
    for (what, text, max) in [
        ("version", &info.version, MAX_VERSION_LEN),
        ("description", &info.description, MAX_DESCRIPTION_LEN),
    ] {
        if (what == "version" && text.is_empty()) || text.len() > max {
            return Err(invalid(format!(
                "the plugin's {what} must be 1 to {max} bytes, found {}",
                text.len()
            )));
        }
        if text.chars().any(char::is_control) {
            return Err(invalid(format!(
                "the plugin's {what} {text:?} holds control characters (a newline, a tab, …)"
            )));
        }
    }
    if info.min_host_minor > abi::CAIRN_ABI_MINOR {
        return Err(LoadError::NeedsNewerHost {
            path: path.to_owned(),
            name: info.name.clone(),
            version: info.version.clone(),
            needs: info.min_host_minor,
        });
    }
    Ok(())
}

fn descriptor_text(bytes: &[u8], what: &str, path: &Path) -> Result<String, LoadError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| LoadError::Invalid {
        path: path.to_owned(),
        what: format!("the plugin's {what} is not valid UTF-8"),
    })
}

/// Reads a library's descriptor from the file, without loading it: no code of the library
/// runs (not even its constructors). Checks everything [`open`] checks before calling it.
pub fn inspect(path: &Path) -> Result<DescriptorInfo, LoadError> {
    use object::{Object, ObjectSegment, ObjectSymbol, ReadRef, RelocationTarget};
    let open_error = |message: String| LoadError::Open {
        path: path.to_owned(),
        message,
    };
    // Read on demand, not whole: a debug build's library is tens of megabytes, of which the
    // descriptor needs a few hundred bytes.
    let data =
        object::ReadCache::new(std::fs::File::open(path).map_err(|e| open_error(e.to_string()))?);
    let file = object::File::parse(&data)
        .map_err(|e| open_error(format!("not a shared library this system can load ({e})")))?;
    if let Some(expected) = host_architecture()
        && file.architecture() != expected
    {
        return Err(open_error(format!(
            "built for {:?}, but this server runs on {expected:?}; build the plugin for this machine",
            file.architecture()
        )));
    }
    let symbol = file
        .dynamic_symbols()
        .find(|s| s.name() == Ok(abi::CAIRN_PLUGIN_SYMBOL) && s.is_definition());
    let Some(symbol) = symbol else {
        return Err(other_major(&file, path));
    };
    // The bytes the file holds for `len` bytes at `address` once loaded.
    let read_at = |address: u64, len: u64| -> Option<&[u8]> {
        file.segments().find_map(|segment| {
            let start = segment.address();
            let (offset, size) = segment.file_range();
            if address < start || address.checked_add(len)? > start.checked_add(size)? {
                return None;
            }
            (&data)
                .read_bytes_at(offset.checked_add(address - start)?, len)
                .ok()
        })
    };
    let base = symbol.address();
    let header_bytes =
        read_at(base, abi::CAIRN_DESCRIPTOR_HEADER_SIZE as u64).ok_or_else(|| {
            LoadError::Truncated {
                path: path.to_owned(),
                size: symbol.size() as u32,
                needed: size_of::<CairnPluginDescriptor>(),
            }
        })?;
    let header = Header::parse(header_bytes).ok_or_else(|| open_error("unreadable".into()))?;
    header.check(path)?;
    let Some(bytes) = read_at(base, size_of::<CairnPluginDescriptor>() as u64) else {
        return Err(LoadError::Truncated {
            path: path.to_owned(),
            size: symbol.size() as u32,
            needed: size_of::<CairnPluginDescriptor>(),
        });
    };
    // Pointers in a shared library are filled in by the loader: the file holds a relative
    // relocation whose addend is the target's address (or, without one, the address itself).
    let relocations: Vec<(u64, object::Relocation)> = file
        .dynamic_relocations()
        .map(|r| r.collect())
        .unwrap_or_default();
    // The pointer stored at `address` as the loader will fill it in.
    let pointer_in = |address: u64| -> u64 {
        relocations
            .iter()
            .find(|(at, r)| *at == address && r.target() == RelocationTarget::Absolute)
            .map(|(_, r)| r.addend() as u64)
            .unwrap_or_else(|| {
                read_at(address, 8)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u64::from_ne_bytes)
            })
    };
    let pointer_at = |field: usize| -> u64 { pointer_in(base + field as u64) };
    let len_at = |field: usize| -> u64 {
        bytes
            .get(field..field + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_ne_bytes)
    };
    let string = |field: usize, what: &str| -> Result<String, LoadError> {
        let ptr = pointer_at(field);
        let len = len_at(field + offset_of!(CairnStr, len));
        if len == 0 {
            return Ok(String::new());
        }
        let raw = read_at(ptr, len).ok_or_else(|| LoadError::Invalid {
            path: path.to_owned(),
            what: format!("the plugin's {what} points outside the library"),
        })?;
        descriptor_text(raw, what, path)
    };
    let info = DescriptorInfo {
        name: string(offset_of!(CairnPluginDescriptor, name), "name")?,
        version: string(offset_of!(CairnPluginDescriptor, version), "version")?,
        description: string(
            offset_of!(CairnPluginDescriptor, description),
            "description",
        )?,
        abi_major: header.abi_major,
        abi_minor: header.abi_minor,
        min_host_minor: header.min_host_minor,
    };
    check_info(&info, path)?;
    // The function table, as `open` will check it after mapping: present, with `create`.
    let invalid = |what: &str| LoadError::Invalid {
        path: path.to_owned(),
        what: what.to_owned(),
    };
    let table = pointer_at(offset_of!(CairnPluginDescriptor, vtable));
    if table == 0 {
        return Err(invalid("no function table"));
    }
    let table_size = read_at(table, 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_ne_bytes)
        .ok_or_else(|| invalid("the function table points outside the library"))?;
    let create = offset_of!(CairnPluginVTable, create);
    if !has_pointer_field(table_size, create) || pointer_in(table + create as u64) == 0 {
        return Err(invalid("the function table has no `create`"));
    }
    Ok(info)
}

/// The architecture this server was built for, as the object crate names it.
fn host_architecture() -> Option<object::Architecture> {
    use object::Architecture as A;
    Some(match std::env::consts::ARCH {
        "x86_64" => A::X86_64,
        "aarch64" => A::Aarch64,
        "x86" => A::I386,
        "arm" => A::Arm,
        "riscv64" => A::Riscv64,
        "powerpc64" => A::PowerPc64,
        "s390x" => A::S390x,
        _ => return None,
    })
}

/// The error for a library without `cairn_plugin_v1`: another major's symbol, or none.
fn other_major<'data, R: object::ReadRef<'data>>(
    file: &object::File<'data, R>,
    path: &Path,
) -> LoadError {
    use object::{Object, ObjectSymbol};
    let other = file.dynamic_symbols().find_map(|s| {
        s.name()
            .ok()?
            .strip_prefix("cairn_plugin_v")?
            .parse::<u32>()
            .ok()
    });
    match other {
        Some(plugin) => LoadError::OtherMajor {
            path: path.to_owned(),
            plugin,
        },
        None => LoadError::NotAPlugin {
            path: path.to_owned(),
        },
    }
}

/// A plugin's descriptor and function table, checked and ready to make instances.
#[derive(Debug, Clone)]
pub struct PluginLibrary {
    info: DescriptorInfo,
    vtable: VTable,
}

#[derive(Debug, Clone, Copy)]
struct VTable {
    create: Option<
        unsafe extern "C" fn(
            *const CairnHost,
            CairnStr,
            *mut *mut c_void,
            *const CairnOutput,
        ) -> CairnStatus,
    >,
    start: Option<unsafe extern "C" fn(*mut c_void) -> CairnFuture>,
    stop: Option<unsafe extern "C" fn(*mut c_void) -> CairnFuture>,
    on_event: Option<unsafe extern "C" fn(*mut c_void, *const CairnEvent) -> CairnFuture>,
    destroy: Option<unsafe extern "C" fn(*mut c_void)>,
    on_commit: Option<unsafe extern "C" fn(*mut c_void, *const abi::CairnCommit) -> CairnFuture>,
    on_statement:
        Option<unsafe extern "C" fn(*mut c_void, *const abi::CairnStatement) -> CairnFuture>,
}

impl PluginLibrary {
    /// Opens the library at `path` and checks its descriptor. The file is first read with
    /// [`inspect`], so a library that is refused never runs any code. The library is never
    /// closed (a plugin's thread-local destructors would run after its code is unmapped).
    pub fn open(path: &Path) -> Result<PluginLibrary, LoadError> {
        inspect(path)?;
        // RTLD_NODELETE: even if someone closed the handle, the code stays mapped.
        #[cfg(target_os = "linux")]
        const NODELETE: std::os::raw::c_int = 0x1000;
        #[cfg(not(target_os = "linux"))]
        const NODELETE: std::os::raw::c_int = 0x80;
        let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL | NODELETE;
        // SAFETY: loading runs the library's initialisers. We only load files from the
        // configured plugin directory (the operator's trusted code) whose descriptor `inspect`
        // has just found valid without running anything.
        let library =
            unsafe { libloading::os::unix::Library::open(Some(path), flags) }.map_err(|e| {
                LoadError::Open {
                    path: path.to_owned(),
                    message: e.to_string(),
                }
            })?;
        // SAFETY: the symbol is the descriptor's data (checked statically above); we read it
        // as a pointer to that data, which libloading returns for a data symbol.
        let symbol = unsafe {
            library.get::<*const CairnPluginDescriptor>(abi::CAIRN_PLUGIN_SYMBOL.as_bytes())
        }
        .map_err(|_| LoadError::NotAPlugin {
            path: path.to_owned(),
        })?;
        let descriptor: *const CairnPluginDescriptor = *symbol;
        // Never unload: the handle is deliberately leaked.
        std::mem::forget(library);
        // SAFETY: the library stays mapped forever, so its descriptor is `'static`; `read`
        // checks the header before reading any further.
        unsafe { PluginLibrary::read(descriptor, path) }
    }

    /// A plugin linked into the server itself, through the same descriptor.
    pub fn builtin(descriptor: &'static CairnPluginDescriptor) -> Result<PluginLibrary, LoadError> {
        // SAFETY: a reference to a static descriptor is valid forever.
        unsafe { PluginLibrary::read(descriptor, Path::new("builtin")) }
    }

    /// # Safety
    /// `descriptor` points to at least the 24-byte header, valid forever; the rest is read
    /// only if the header's `size` covers it.
    unsafe fn read(
        descriptor: *const CairnPluginDescriptor,
        path: &Path,
    ) -> Result<PluginLibrary, LoadError> {
        // SAFETY: guaranteed by the caller: the header is readable.
        let header_bytes = unsafe {
            std::slice::from_raw_parts(descriptor.cast::<u8>(), abi::CAIRN_DESCRIPTOR_HEADER_SIZE)
        };
        let header = Header::parse(header_bytes).ok_or_else(|| LoadError::Invalid {
            path: path.to_owned(),
            what: "unreadable header".into(),
        })?;
        header.check(path)?;
        // SAFETY: `check` made sure the descriptor declares at least our full size.
        let d = unsafe { &*descriptor };
        let text = |s: CairnStr, what: &str| {
            // SAFETY: descriptor strings are static data of the library (the ABI's rule).
            descriptor_text(unsafe { super::bytes(s) }, what, path)
        };
        let info = DescriptorInfo {
            name: text(d.name, "name")?,
            version: text(d.version, "version")?,
            description: text(d.description, "description")?,
            abi_major: d.abi_major,
            abi_minor: d.abi_minor,
            min_host_minor: d.min_host_minor,
        };
        check_info(&info, path)?;
        let table = d.vtable;
        if table.is_null() {
            return Err(LoadError::Invalid {
                path: path.to_owned(),
                what: "no function table".into(),
            });
        }
        // SAFETY: the vtable pointer of a valid descriptor points to static data that starts
        // with its `size`.
        let size = unsafe { std::ptr::addr_of!((*table).size).read() };
        // Each field is read only when the table is long enough to hold it: a table built
        // for an older minor ends before the fields added since, and reading past it could
        // touch memory that is not the plugin's.
        macro_rules! field {
            ($name:ident) => {
                if has_pointer_field(size, offset_of!(CairnPluginVTable, $name)) {
                    // SAFETY: the table's `size` covers the field (checked just above).
                    unsafe { std::ptr::addr_of!((*table).$name).read() }
                } else {
                    None
                }
            };
        }
        let vtable = VTable {
            create: field!(create),
            start: field!(start),
            stop: field!(stop),
            on_event: field!(on_event),
            destroy: field!(destroy),
            on_commit: field!(on_commit),
            on_statement: field!(on_statement),
        };
        if vtable.create.is_none() {
            return Err(LoadError::Invalid {
                path: path.to_owned(),
                what: "the function table has no `create`".into(),
            });
        }
        Ok(PluginLibrary { info, vtable })
    }

    /// What the descriptor says.
    pub fn info(&self) -> &DescriptorInfo {
        &self.info
    }

    /// Makes an instance with `host` as its services and `config` as its config.
    pub fn create(&self, host: HostTable, config: &str) -> Result<PluginInstance, PluginError> {
        let Some(create) = self.vtable.create else {
            return Err(PluginError::Unsupported("create".into()));
        };
        let mut instance: *mut c_void = std::ptr::null_mut();
        let mut collector = super::Collector::default();
        let output = collector.output();
        // SAFETY: the plugin's `create` with a host table that lives forever, a config and an
        // output that live across the call, and storage for the instance pointer.
        let status = unsafe { create(host.0, CairnStr::new(config), &mut instance, &output) };
        match (status, collector.into_outcome()) {
            (abi::CAIRN_OK, _) if !instance.is_null() => Ok(PluginInstance {
                vtable: self.vtable,
                instance,
                plugin: self.info.name.clone(),
            }),
            (_, Err(e)) => Err(e),
            _ => Err(PluginError::failed("create failed without saying why")),
        }
    }
}

/// One instance of a plugin. Dropping it calls the plugin's `destroy`.
#[derive(Debug)]
pub struct PluginInstance {
    vtable: VTable,
    instance: *mut c_void,
    /// The plugin's name, for the crash report while `destroy` runs.
    plugin: String,
}

// SAFETY: the ABI: an instance's functions may be called from any thread.
unsafe impl Send for PluginInstance {}
// SAFETY: as above, concurrently too (the plugin synchronises its own state).
unsafe impl Sync for PluginInstance {}

impl PluginInstance {
    fn future(
        &self,
        f: Option<unsafe extern "C" fn(*mut c_void) -> CairnFuture>,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        match f {
            // SAFETY: a function of this instance's table, with the instance it made.
            Some(f) => Box::pin(unsafe { ImportedFuture::new(f(self.instance)) }),
            None => Box::pin(std::future::ready(Ok(Reply::default()))),
        }
    }

    /// The plugin's `start`.
    pub fn start(&self) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        self.future(self.vtable.start)
    }

    /// The plugin's `stop`.
    pub fn stop(&self) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        self.future(self.vtable.stop)
    }

    /// Delivers an event.
    pub fn on_event(
        &self,
        kind: abi::CairnEventKind,
        database: &str,
        detail: &str,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        let Some(on_event) = self.vtable.on_event else {
            return Box::pin(std::future::ready(Ok(Reply::default())));
        };
        let event = CairnEvent {
            size: size_of::<CairnEvent>() as u32,
            kind,
            database: CairnStr::new(database),
            detail: CairnStr::new(detail),
        };
        // SAFETY: as in `future`; the event is borrowed for the call only (the ABI's rule).
        Box::pin(unsafe { ImportedFuture::new(on_event(self.instance, &event)) })
    }
}

/// One committed transaction's row changes, as the host hands them to a plugin (ABI 1.8).
#[derive(Debug, Clone, Default)]
pub struct CommitBatch {
    /// The database.
    pub database: String,
    /// The commit's number among the database's commits.
    pub sequence: u64,
    /// Each change: its table, `CAIRN_CHANGE_*` op and rowid.
    pub changes: Vec<(Arc<str>, abi::CairnChangeOp, i64)>,
    /// Commits dropped just before this one (a full queue).
    pub missed: u64,
    /// Changes of this commit not listed.
    pub truncated: u64,
}

/// One statement a session ran, as the host hands it to a plugin (ABI 1.10).
#[derive(Debug, Clone, Default)]
pub struct StatementRecord {
    /// The session's database.
    pub database: String,
    /// The session's user.
    pub user: String,
    /// Its text, at most 4096 bytes.
    pub text: String,
    /// The SQLSTATE of its error, if it failed.
    pub sqlstate: Option<String>,
    /// When it started, in microseconds since the Unix epoch.
    pub started_at_micros: i64,
    /// How long it ran.
    pub duration_micros: u64,
    /// The rows it returned or changed.
    pub rows: u64,
    /// Statements dropped just before this one.
    pub missed: u64,
}

impl PluginInstance {
    /// Whether the plugin takes statements (its table has `on_statement`, ABI 1.10).
    pub fn takes_statements(&self) -> bool {
        self.vtable.on_statement.is_some()
    }

    /// Delivers one statement.
    pub fn on_statement(
        &self,
        statement: &StatementRecord,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        let Some(on_statement) = self.vtable.on_statement else {
            return Box::pin(std::future::ready(Ok(Reply::default())));
        };
        let abi_statement = abi::CairnStatement {
            size: size_of::<abi::CairnStatement>() as u32,
            failed: u32::from(statement.sqlstate.is_some()),
            database: CairnStr::new(&statement.database),
            user: CairnStr::new(&statement.user),
            text: CairnStr::new(&statement.text),
            sqlstate: CairnStr::new(statement.sqlstate.as_deref().unwrap_or("")),
            started_at_micros: statement.started_at_micros,
            duration_micros: statement.duration_micros,
            rows: statement.rows,
            missed: statement.missed,
        };
        // SAFETY: as in `future`; the statement and its strings are borrowed for the call
        // only (the ABI's rule), and live across it.
        Box::pin(unsafe { ImportedFuture::new(on_statement(self.instance, &abi_statement)) })
    }

    /// Whether the plugin takes commits (its table has `on_commit`, ABI 1.8).
    pub fn takes_commits(&self) -> bool {
        self.vtable.on_commit.is_some()
    }

    /// Delivers one committed transaction.
    pub fn on_commit(&self, commit: &CommitBatch) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        let Some(on_commit) = self.vtable.on_commit else {
            return Box::pin(std::future::ready(Ok(Reply::default())));
        };
        let changes: Vec<abi::CairnChange> = commit
            .changes
            .iter()
            .map(|(table, op, rowid)| abi::CairnChange {
                table: CairnStr::new(table),
                op: *op,
                reserved: 0,
                rowid: *rowid,
            })
            .collect();
        let abi_commit = abi::CairnCommit {
            size: size_of::<abi::CairnCommit>() as u32,
            reserved: 0,
            database: CairnStr::new(&commit.database),
            sequence: commit.sequence,
            changes: changes.as_ptr(),
            change_count: changes.len(),
            missed: commit.missed,
            truncated: commit.truncated,
        };
        // SAFETY: as in `future`; the commit and its changes are borrowed for the call only
        // (the ABI's rule), and live across it.
        Box::pin(unsafe { ImportedFuture::new(on_commit(self.instance, &abi_commit)) })
    }
}

impl Drop for PluginInstance {
    fn drop(&mut self) {
        if let Some(destroy) = self.vtable.destroy {
            let _running = super::crash::running(&self.plugin, "destroy", "");
            // SAFETY: called once, with the instance `create` made; nothing of it is called
            // afterwards.
            unsafe { destroy(self.instance) }
        }
    }
}

/// A context a plugin handed over with a procedure or a job: released exactly once, when the
/// owner is dropped.
#[derive(Debug)]
struct ForeignCtx {
    ctx: *mut c_void,
    drop_ctx: Option<unsafe extern "C" fn(*mut c_void)>,
}

impl Drop for ForeignCtx {
    fn drop(&mut self) {
        if let Some(drop_ctx) = self.drop_ctx {
            // SAFETY: the ABI: the plugin's own release function, called once with its ctx.
            unsafe { drop_ctx(self.ctx) }
        }
    }
}

/// A scalar SQL function a plugin registered. Dropping it releases the plugin's context.
#[derive(Debug)]
pub struct ForeignFunction {
    /// The function's name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// How many arguments it takes, or -1 for any number.
    pub arg_count: i32,
    /// Whether the same arguments always give the same result.
    pub deterministic: bool,
    ctx: ForeignCtx,
    call: unsafe extern "C" fn(
        *mut c_void,
        *const CairnValue,
        usize,
        *const CairnOutput,
    ) -> CairnStatus,
}

// SAFETY: the ABI: a function may be called from any thread, concurrently.
unsafe impl Send for ForeignFunction {}
// SAFETY: as above.
unsafe impl Sync for ForeignFunction {}

impl ForeignFunction {
    /// Computes the function's value for `args`: the one value of the one row the plugin
    /// writes, or its error (a panic in the plugin is an error, not an unwind).
    pub fn call(&self, args: &[Value]) -> Result<Value, PluginError> {
        let abi_args: Vec<CairnValue> = args.iter().map(super::borrow_value).collect();
        let mut collector = super::Collector::default();
        let output = collector.output();
        // SAFETY: the plugin's function with its own context; the arguments and the output
        // live across the call, and the plugin copies what it keeps.
        let status =
            unsafe { (self.call)(self.ctx.ctx, abi_args.as_ptr(), abi_args.len(), &output) };
        one_value(status, collector)
    }
}

/// The one value of the one row a plugin's function wrote, or its error.
fn one_value(status: CairnStatus, collector: super::Collector) -> Result<Value, PluginError> {
    let reply = collector.into_outcome()?;
    if status != abi::CAIRN_OK {
        return Err(PluginError::failed("the function failed without a reason"));
    }
    match <[Vec<Value>; 1]>::try_from(reply.rows) {
        Ok([row]) => match <[Value; 1]>::try_from(row) {
            Ok([value]) => Ok(value),
            Err(row) => Err(PluginError::failed(format!(
                "the function wrote {} values, not one",
                row.len()
            ))),
        },
        Err(rows) => Err(PluginError::failed(format!(
            "the function wrote {} rows, not one",
            rows.len()
        ))),
    }
}

/// An aggregate SQL function a plugin registered. Dropping it releases the plugin's
/// context (a group's state holds it: after the last group ends).
#[derive(Debug)]
pub struct ForeignAggregate {
    /// The function's name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// How many arguments it takes per row, or -1 for any number.
    pub arg_count: i32,
    /// Whether the same rows always give the same result.
    pub deterministic: bool,
    ctx: ForeignCtx,
    start: unsafe extern "C" fn(*mut c_void, *mut *mut c_void, *const CairnOutput) -> CairnStatus,
    step: unsafe extern "C" fn(
        *mut c_void,
        *mut c_void,
        *const CairnValue,
        usize,
        *const CairnOutput,
    ) -> CairnStatus,
    finish: unsafe extern "C" fn(*mut c_void, *mut c_void, *const CairnOutput) -> CairnStatus,
    drop_state: Option<unsafe extern "C" fn(*mut c_void, *mut c_void)>,
    /// A window function's (ABI 1.9): both or neither.
    window: Option<Window>,
}

/// The two functions that make an aggregate a window function.
#[derive(Debug, Clone, Copy)]
struct Window {
    value: unsafe extern "C" fn(*mut c_void, *mut c_void, *const CairnOutput) -> CairnStatus,
    inverse: unsafe extern "C" fn(
        *mut c_void,
        *mut c_void,
        *const CairnValue,
        usize,
        *const CairnOutput,
    ) -> CairnStatus,
}

// SAFETY: the ABI: an aggregate may be used from any thread, concurrently (each group's state
// by one thread at a time).
unsafe impl Send for ForeignAggregate {}
// SAFETY: as above.
unsafe impl Sync for ForeignAggregate {}

impl ForeignAggregate {
    /// Whether it is a window function too (ABI 1.9).
    pub fn is_window(&self) -> bool {
        self.window.is_some()
    }

    /// A new group's state.
    pub fn start(self: &Arc<Self>) -> Result<AggregateState, PluginError> {
        let mut state: *mut c_void = std::ptr::null_mut();
        let mut collector = super::Collector::default();
        let output = collector.output();
        // SAFETY: the plugin's function with its own context; `state` and the output live
        // across the call.
        let status = unsafe { (self.start)(self.ctx.ctx, &mut state, &output) };
        collector.into_outcome()?;
        if status != abi::CAIRN_OK {
            return Err(PluginError::failed("the aggregate could not start a group"));
        }
        Ok(AggregateState {
            aggregate: Arc::clone(self),
            state,
            open: true,
        })
    }
}

/// One group's state of a plugin's aggregate: stepped row by row, then finished once;
/// dropped unfinished, the plugin releases it.
#[derive(Debug)]
pub struct AggregateState {
    aggregate: Arc<ForeignAggregate>,
    state: *mut c_void,
    open: bool,
}

// SAFETY: the ABI: a state is the plugin's, used by one thread at a time (SQLite steps a group
// on its statement's thread); the plugin may not tie it to the thread that made it.
unsafe impl Send for AggregateState {}

impl std::panic::UnwindSafe for AggregateState {}
impl std::panic::RefUnwindSafe for AggregateState {}

impl AggregateState {
    /// Adds one row's arguments.
    pub fn step(&mut self, args: &[Value]) -> Result<(), PluginError> {
        let abi_args: Vec<CairnValue> = args.iter().map(super::borrow_value).collect();
        let mut collector = super::Collector::default();
        let output = collector.output();
        let a = &self.aggregate;
        // SAFETY: the plugin's function, context and (open) state; the arguments and output
        // live across the call.
        let status = unsafe {
            (a.step)(
                a.ctx.ctx,
                self.state,
                abi_args.as_ptr(),
                abi_args.len(),
                &output,
            )
        };
        collector.into_outcome()?;
        if status != abi::CAIRN_OK {
            return Err(PluginError::failed("the aggregate failed without a reason"));
        }
        Ok(())
    }

    /// The group's current value, the state kept (a window function's).
    pub fn value(&self) -> Result<Value, PluginError> {
        let a = &self.aggregate;
        let Some(window) = a.window else {
            return Err(PluginError::Unsupported(format!(
                "{} is not a window function",
                a.name
            )));
        };
        let mut collector = super::Collector::default();
        let output = collector.output();
        // SAFETY: the plugin's function, context and (open) state; the output lives across
        // the call.
        let status = unsafe { (window.value)(a.ctx.ctx, self.state, &output) };
        one_value(status, collector)
    }

    /// Takes one row's arguments back out of the state (a window function's).
    pub fn inverse(&mut self, args: &[Value]) -> Result<(), PluginError> {
        let a = &self.aggregate;
        let Some(window) = a.window else {
            return Err(PluginError::Unsupported(format!(
                "{} is not a window function",
                a.name
            )));
        };
        let abi_args: Vec<CairnValue> = args.iter().map(super::borrow_value).collect();
        let mut collector = super::Collector::default();
        let output = collector.output();
        // SAFETY: as in `step`.
        let status = unsafe {
            (window.inverse)(
                a.ctx.ctx,
                self.state,
                abi_args.as_ptr(),
                abi_args.len(),
                &output,
            )
        };
        collector.into_outcome()?;
        if status != abi::CAIRN_OK {
            return Err(PluginError::failed("the aggregate failed without a reason"));
        }
        Ok(())
    }

    /// The group's value; the plugin releases the state.
    pub fn finish(mut self) -> Result<Value, PluginError> {
        self.open = false;
        let mut collector = super::Collector::default();
        let output = collector.output();
        let a = &self.aggregate;
        // SAFETY: the plugin's function, context and state, finished once (`open` is cleared
        // so that drop does not release it again).
        let status = unsafe { (a.finish)(a.ctx.ctx, self.state, &output) };
        one_value(status, collector)
    }
}

impl Drop for AggregateState {
    fn drop(&mut self) {
        if self.open
            && let Some(drop_state) = self.aggregate.drop_state
        {
            // SAFETY: the ABI: the plugin's release function, once, for a state never finished.
            unsafe { drop_state(self.aggregate.ctx.ctx, self.state) }
        }
    }
}

/// A table function a plugin registered. Dropping it releases the plugin's context (a scan
/// holds it: after the last scan closes).
#[derive(Debug)]
pub struct ForeignTableFunction {
    /// The function's name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// The columns of its rows.
    pub columns: Vec<Column>,
    /// Its arguments, in order.
    pub arguments: Vec<Column>,
    ctx: ForeignCtx,
    open: unsafe extern "C" fn(
        *mut c_void,
        *const CairnValue,
        usize,
        *mut *mut c_void,
        *const CairnOutput,
    ) -> CairnStatus,
    next: unsafe extern "C" fn(*mut c_void, *mut c_void, *const CairnOutput) -> CairnStatus,
    close: unsafe extern "C" fn(*mut c_void, *mut c_void),
}

// SAFETY: the ABI: a table function may be used from any thread, concurrently (each scan by
// one thread at a time).
unsafe impl Send for ForeignTableFunction {}
// SAFETY: as above.
unsafe impl Sync for ForeignTableFunction {}

impl ForeignTableFunction {
    /// A new scan for `args`.
    pub fn open(self: &Arc<Self>, args: &[Value]) -> Result<TableScan, PluginError> {
        let abi_args: Vec<CairnValue> = args.iter().map(super::borrow_value).collect();
        let mut rows: *mut c_void = std::ptr::null_mut();
        let mut collector = super::Collector::default();
        let output = collector.output();
        // SAFETY: the plugin's function with its own context; the arguments, `rows` and the
        // output live across the call.
        let status = unsafe {
            (self.open)(
                self.ctx.ctx,
                abi_args.as_ptr(),
                abi_args.len(),
                &mut rows,
                &output,
            )
        };
        if status != abi::CAIRN_OK {
            collector.into_outcome()?;
            return Err(PluginError::failed("the table function could not start"));
        }
        // Opened: closed once whatever else it wrote (dropping the scan closes it).
        let scan = TableScan {
            function: Arc::clone(self),
            rows,
        };
        collector.into_outcome()?;
        Ok(scan)
    }
}

/// One scan of a plugin's table function: batches of rows until an empty one; dropped, the
/// plugin releases it.
#[derive(Debug)]
pub struct TableScan {
    function: Arc<ForeignTableFunction>,
    rows: *mut c_void,
}

// SAFETY: the ABI: a scan is the plugin's, used by one thread at a time (the statement's); the
// plugin may not tie it to the thread that opened it.
unsafe impl Send for TableScan {}

impl TableScan {
    /// The next rows, as the plugin wrote them (at most [`abi::CAIRN_TABLE_BATCH_MAX`]); none
    /// at the end.
    pub fn next_batch(&mut self) -> Result<Vec<Vec<Value>>, PluginError> {
        let mut collector = super::Collector::with_row_limit(abi::CAIRN_TABLE_BATCH_MAX);
        let output = collector.output();
        let f = &self.function;
        // SAFETY: the plugin's function, context and (open) scan; the output lives across
        // the call.
        let status = unsafe { (f.next)(f.ctx.ctx, self.rows, &output) };
        let reply = collector.into_outcome()?;
        if status != abi::CAIRN_OK {
            return Err(PluginError::failed(
                "the table function failed without a reason",
            ));
        }
        Ok(reply.rows)
    }
}

impl Drop for TableScan {
    fn drop(&mut self) {
        let f = &self.function;
        // SAFETY: the ABI: the plugin's release function, once per opened scan.
        unsafe { (f.close)(f.ctx.ctx, self.rows) }
    }
}

/// A procedure a plugin registered. Dropping it releases the plugin's context.
#[derive(Debug)]
pub struct ForeignProcedure {
    /// The procedure's name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// The columns of its rows.
    pub columns: Vec<Column>,
    ctx: ForeignCtx,
    call: unsafe extern "C" fn(*mut c_void, *const CairnArg, usize) -> CairnFuture,
}

// SAFETY: the ABI: a procedure may be called from any thread, concurrently.
unsafe impl Send for ForeignProcedure {}
// SAFETY: as above.
unsafe impl Sync for ForeignProcedure {}

impl ForeignProcedure {
    /// Starts a call with positional (`None`) and named arguments.
    pub fn call(&self, args: &[(Option<String>, Value)]) -> ImportedFuture {
        let abi_args: Vec<CairnArg> = args
            .iter()
            .map(|(name, value)| CairnArg {
                name: name.as_deref().map_or(CairnStr::EMPTY, CairnStr::new),
                value: super::borrow_value(value),
            })
            .collect();
        // SAFETY: the plugin's function with its own context; the arguments live across the
        // call, and the plugin copies what it keeps.
        let raw = unsafe { (self.call)(self.ctx.ctx, abi_args.as_ptr(), abi_args.len()) };
        // SAFETY: a fresh future from the plugin.
        unsafe { ImportedFuture::new(raw) }
    }
}

/// A gauge value a plugin set (ABI 1.4), copied out of the call.
#[derive(Debug, Clone, PartialEq)]
pub struct GaugeSample {
    /// The gauge's name, as the plugin wrote it.
    pub name: String,
    /// What it measures.
    pub help: String,
    /// The series' labels, in the plugin's order.
    pub labels: Vec<(String, String)>,
    /// The value; NaN removes the series.
    pub value: f64,
}

/// A job a plugin scheduled. Dropping it releases the plugin's context.
#[derive(Debug)]
pub struct ForeignJob {
    /// The job's name.
    pub name: String,
    /// Its cron expression.
    pub cron: String,
    ctx: ForeignCtx,
    run: unsafe extern "C" fn(*mut c_void) -> CairnFuture,
}

// SAFETY: the ABI: a job may be run from any thread.
unsafe impl Send for ForeignJob {}
// SAFETY: as above.
unsafe impl Sync for ForeignJob {}

impl ForeignJob {
    /// Starts one run.
    pub fn run(&self) -> ImportedFuture {
        // SAFETY: the plugin's function with its own context.
        let raw = unsafe { (self.run)(self.ctx.ctx) };
        // SAFETY: a fresh future from the plugin.
        unsafe { ImportedFuture::new(raw) }
    }
}

/// A boxed future as host services return them.
pub type BoxOutcome = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// What the server provides behind a plugin's [`CairnHost`] table. One per plugin instance,
/// so every call knows which plugin made it.
pub trait HostServices: Send + Sync {
    /// A log line from the plugin.
    fn log(&self, level: abi::CairnLogLevel, target: &str, message: &str);
    /// The databases' names.
    fn list_databases(&self) -> Result<Vec<String>, PluginError>;
    /// Runs SQL against a database.
    fn execute_sql(&self, database: String, sql: String, params: Vec<Value>) -> BoxOutcome;
    /// Registers a procedure.
    fn register_procedure(&self, procedure: ForeignProcedure) -> Result<(), PluginError>;
    /// Sets the event subscription mask.
    fn subscribe(&self, mask: u64) -> Result<(), PluginError>;
    /// Schedules a job.
    fn schedule(&self, job: ForeignJob) -> Result<(), PluginError>;
    /// Completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxOutcome;
    /// Backs up a database to an archive (ABI 1.1).
    fn backup_database(&self, database: String, path: String, options: Args) -> BoxOutcome;
    /// Verifies an archive (ABI 1.1).
    fn verify_archive(&self, path: String) -> BoxOutcome;
    /// The newest rows of the backup history (ABI 1.1).
    fn list_backups(&self, database: Option<String>, limit: u64) -> Outcome;
    /// The plugin's private state directory (ABI 1.2).
    fn state_directory(&self) -> Result<PathBuf, PluginError>;
    /// A directory resolved by the backup path rules, created if missing (ABI 1.2).
    fn archive_directory(&self, path: String) -> Result<PathBuf, PluginError>;
    /// Logs an alert and delivers it to subscribed plugins (ABI 1.2).
    fn raise_alert(&self, database: Option<String>, message: String) -> Result<(), PluginError>;
    /// Every archive and export at `location` (ABI 1.3).
    fn list_archives(&self, location: String) -> BoxOutcome;
    /// Deletes the archive or export at `location` (ABI 1.3).
    fn delete_archive(&self, location: String) -> BoxOutcome;
    /// Sets (or, with NaN, removes) one series of a plugin's gauge (ABI 1.4).
    fn set_gauge(&self, sample: GaugeSample) -> Result<(), PluginError>;
    /// A restore drill of the archive at `location`, of `database` (ABI 1.5).
    fn drill_archive(&self, database: String, location: String) -> BoxOutcome;
    /// Registers a scalar SQL function (ABI 1.6).
    fn register_function(&self, function: ForeignFunction) -> Result<(), PluginError>;
    /// Registers an aggregate SQL function (ABI 1.6).
    fn register_aggregate(&self, aggregate: ForeignAggregate) -> Result<(), PluginError>;
    /// Registers a table function (ABI 1.7).
    fn register_table_function(&self, function: ForeignTableFunction) -> Result<(), PluginError>;
    /// Subscribes to the row changes of committed transactions of `databases` (none: all)
    /// and `tables` (none: all) (ABI 1.8).
    fn subscribe_changes(
        &self,
        databases: Vec<String>,
        tables: Vec<String>,
    ) -> Result<(), PluginError>;
    /// Subscribes to the statements that ran for at least `min_duration_micros`
    /// (`u64::MAX`: ends the subscription) (ABI 1.10).
    fn subscribe_statements(&self, min_duration_micros: u64) -> Result<(), PluginError>;
}

/// A host function table for one plugin instance. It is never freed: a plugin may hold the
/// pointer (in a thread of its own, say) after it was unloaded, so the services behind it
/// must turn calls from an unloaded plugin into errors rather than disappear.
#[derive(Debug, Clone, Copy)]
pub struct HostTable(*const CairnHost);

// SAFETY: the table is never written after `new` and never freed, and every function in it
// forwards to `HostServices`, which is `Send + Sync`: any thread may hold and use it.
unsafe impl Send for HostTable {}

impl HostTable {
    /// A table forwarding to `services`; `max_log_level` is the most verbose level the server
    /// logs.
    pub fn new(services: Arc<dyn HostServices>, max_log_level: abi::CairnLogLevel) -> HostTable {
        let ctx: *mut Arc<dyn HostServices> = Box::into_raw(Box::new(services));
        let table = Box::new(CairnHost {
            size: size_of::<CairnHost>() as u32,
            abi_minor: abi::CAIRN_ABI_MINOR,
            ctx: ctx.cast(),
            max_log_level,
            reserved: 0,
            log: Some(host_log),
            list_databases: Some(host_list_databases),
            execute_sql: Some(host_execute_sql),
            register_procedure: Some(host_register_procedure),
            subscribe: Some(host_subscribe),
            schedule: Some(host_schedule),
            sleep: Some(host_sleep),
            backup_database: Some(host_backup_database),
            verify_archive: Some(host_verify_archive),
            list_backups: Some(host_list_backups),
            state_directory: Some(host_state_directory),
            archive_directory: Some(host_archive_directory),
            raise_alert: Some(host_raise_alert),
            list_archives: Some(host_list_archives),
            delete_archive: Some(host_delete_archive),
            set_gauge: Some(host_set_gauge),
            drill_archive: Some(host_drill_archive),
            register_function: Some(host_register_function),
            register_aggregate: Some(host_register_aggregate),
            register_table_function: Some(host_register_table_function),
            subscribe_changes: Some(host_subscribe_changes),
            subscribe_statements: Some(host_subscribe_statements),
        });
        HostTable(Box::leak(table))
    }
}

/// # Safety
/// `host` is a table made by [`HostTable::new`] (never freed).
unsafe fn services<'a>(host: *const CairnHost) -> Option<&'a Arc<dyn HostServices>> {
    // SAFETY: guaranteed by the caller; the ctx is the leaked `Arc` `new` made.
    unsafe {
        host.as_ref()
            .and_then(|h| h.ctx.cast::<Arc<dyn HostServices>>().as_ref())
    }
}

unsafe extern "C" fn host_log(
    host: *const CairnHost,
    level: abi::CairnLogLevel,
    target: CairnStr,
    message: CairnStr,
) {
    let _ = catch(|| {
        // SAFETY: the ABI: the plugin passes the table it was given.
        if let Some(services) = unsafe { services(host) } {
            // SAFETY: the strings are borrowed for the call.
            let (target, message) = unsafe { (super::bytes(target), super::bytes(message)) };
            services.log(
                level,
                &String::from_utf8_lossy(target),
                &String::from_utf8_lossy(message),
            );
        }
        Ok(())
    });
}

unsafe extern "C" fn host_list_databases(
    host: *const CairnHost,
    output: *const CairnOutput,
) -> CairnStatus {
    let outcome = catch(|| {
        // SAFETY: as in `host_log`.
        let services = unsafe { services(host) }.ok_or_else(no_host)?;
        let names = services.list_databases()?;
        Ok(Reply {
            columns: Some(vec![Column::new("name", ColumnType::Text)]),
            rows: names.into_iter().map(|n| vec![Value::Text(n)]).collect(),
            message: None,
        })
    });
    // SAFETY: the ABI: `output` is valid for the call.
    unsafe { answer(output, outcome) }
}

unsafe extern "C" fn host_execute_sql(
    host: *const CairnHost,
    database: CairnStr,
    sql: CairnStr,
    params: *const CairnValue,
    param_count: usize,
) -> CairnFuture {
    let started = catch(|| {
        // SAFETY: as in `host_log`.
        let services = unsafe { services(host) }.ok_or_else(no_host)?;
        // SAFETY: the strings and parameters are borrowed for the call; we copy them.
        let (database, sql, params) = unsafe {
            (
                super::text(database, "the database name")?,
                super::text(sql, "the SQL text")?,
                super::values(params, param_count)?,
            )
        };
        Ok(services.execute_sql(database, sql, params))
    });
    start(started)
}

unsafe extern "C" fn host_backup_database(
    host: *const CairnHost,
    database: CairnStr,
    path: CairnStr,
    options: *const CairnArg,
    option_count: usize,
) -> CairnFuture {
    let started = catch(|| {
        // SAFETY: as in `host_log`.
        let services = unsafe { services(host) }.ok_or_else(no_host)?;
        // SAFETY: the strings and options are borrowed for the call; we copy them.
        let (database, path, options) = unsafe {
            (
                super::text(database, "the database name")?,
                super::text(path, "the archive path")?,
                super::args(options, option_count)?,
            )
        };
        Ok(services.backup_database(database, path, options))
    });
    start(started)
}

unsafe extern "C" fn host_verify_archive(host: *const CairnHost, path: CairnStr) -> CairnFuture {
    let started = catch(|| {
        // SAFETY: as in `host_log`.
        let services = unsafe { services(host) }.ok_or_else(no_host)?;
        // SAFETY: the string is borrowed for the call; we copy it.
        let path = unsafe { super::text(path, "the archive path") }?;
        Ok(services.verify_archive(path))
    });
    start(started)
}

unsafe extern "C" fn host_drill_archive(
    host: *const CairnHost,
    database: CairnStr,
    location: CairnStr,
) -> CairnFuture {
    let started = catch(|| {
        // SAFETY: as in `host_log`.
        let services = unsafe { services(host) }.ok_or_else(no_host)?;
        // SAFETY: the strings are borrowed for the call; we copy them.
        let (database, location) = unsafe {
            (
                super::text(database, "the database name")?,
                super::text(location, "the location")?,
            )
        };
        Ok(services.drill_archive(database, location))
    });
    start(started)
}

unsafe extern "C" fn host_list_archives(host: *const CairnHost, location: CairnStr) -> CairnFuture {
    let started = catch(|| {
        // SAFETY: as in `host_log`.
        let services = unsafe { services(host) }.ok_or_else(no_host)?;
        // SAFETY: the string is borrowed for the call; we copy it.
        let location = unsafe { super::text(location, "the location") }?;
        Ok(services.list_archives(location))
    });
    start(started)
}

unsafe extern "C" fn host_delete_archive(
    host: *const CairnHost,
    location: CairnStr,
) -> CairnFuture {
    let started = catch(|| {
        // SAFETY: as in `host_log`.
        let services = unsafe { services(host) }.ok_or_else(no_host)?;
        // SAFETY: the string is borrowed for the call; we copy it.
        let location = unsafe { super::text(location, "the location") }?;
        Ok(services.delete_archive(location))
    });
    start(started)
}

unsafe extern "C" fn host_list_backups(
    host: *const CairnHost,
    database: CairnStr,
    limit: u64,
    output: *const CairnOutput,
) -> CairnStatus {
    let outcome = catch(|| {
        // SAFETY: as in `host_log`.
        let services = unsafe { services(host) }.ok_or_else(no_host)?;
        // SAFETY: the string is borrowed for the call; we copy it.
        let database = unsafe { super::text(database, "the database name") }?;
        services.list_backups((!database.is_empty()).then_some(database), limit)
    });
    // SAFETY: the ABI: `output` is valid for the call.
    unsafe { answer(output, outcome) }
}

/// A one-row reply holding a path, as the directory functions answer.
fn path_reply(path: PathBuf) -> Reply {
    Reply {
        columns: Some(vec![Column::new("path", ColumnType::Text)]),
        rows: vec![vec![Value::Text(path.display().to_string())]],
        message: None,
    }
}

unsafe extern "C" fn host_state_directory(
    host: *const CairnHost,
    output: *const CairnOutput,
) -> CairnStatus {
    let outcome = catch(|| {
        // SAFETY: as in `host_log`.
        let services = unsafe { services(host) }.ok_or_else(no_host)?;
        services.state_directory().map(path_reply)
    });
    // SAFETY: the ABI: `output` is valid for the call.
    unsafe { answer(output, outcome) }
}

unsafe extern "C" fn host_archive_directory(
    host: *const CairnHost,
    path: CairnStr,
    output: *const CairnOutput,
) -> CairnStatus {
    let outcome = catch(|| {
        // SAFETY: as in `host_log`.
        let services = unsafe { services(host) }.ok_or_else(no_host)?;
        // SAFETY: the string is borrowed for the call; we copy it.
        let path = unsafe { super::text(path, "the directory") }?;
        services.archive_directory(path).map(path_reply)
    });
    // SAFETY: the ABI: `output` is valid for the call.
    unsafe { answer(output, outcome) }
}

unsafe extern "C" fn host_raise_alert(
    host: *const CairnHost,
    database: CairnStr,
    message: CairnStr,
    output: *const CairnOutput,
) -> CairnStatus {
    let outcome = catch(|| {
        // SAFETY: as in `host_log`.
        let services = unsafe { services(host) }.ok_or_else(no_host)?;
        // SAFETY: the strings are borrowed for the call; we copy them.
        let (database, message) = unsafe {
            (
                super::text(database, "the database name")?,
                super::text(message, "the alert")?,
            )
        };
        services
            .raise_alert((!database.is_empty()).then_some(database), message)
            .map(|()| Reply::default())
    });
    // SAFETY: the ABI: `output` is valid for the call.
    unsafe { answer(output, outcome) }
}

unsafe extern "C" fn host_set_gauge(
    host: *const CairnHost,
    name: CairnStr,
    help: CairnStr,
    labels: *const CairnArg,
    label_count: usize,
    value: f64,
    output: *const CairnOutput,
) -> CairnStatus {
    let outcome = catch(|| {
        // SAFETY: as in `host_log`.
        let services = unsafe { services(host) }.ok_or_else(no_host)?;
        // SAFETY: the strings and labels are borrowed for the call; we copy them.
        let (name, help, labels) = unsafe {
            (
                super::text(name, "the gauge name")?,
                super::text(help, "the gauge help")?,
                super::args(labels, label_count)?,
            )
        };
        if !labels.positional.is_empty() {
            return Err(PluginError::InvalidArgument(format!(
                "every label of gauge {name:?} needs a name"
            )));
        }
        let labels = labels
            .named
            .into_iter()
            .map(|(label, value)| match value {
                Value::Text(text) => Ok((label, text)),
                other => Err(PluginError::InvalidArgument(format!(
                    "the value of label {label:?} of gauge {name:?} must be text, got {other:?}"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        services
            .set_gauge(GaugeSample {
                name,
                help,
                labels,
                value,
            })
            .map(|()| Reply::default())
    });
    // SAFETY: the ABI: `output` is valid for the call.
    unsafe { answer(output, outcome) }
}

unsafe extern "C" fn host_register_procedure(
    host: *const CairnHost,
    spec: *const CairnProcedureSpec,
    output: *const CairnOutput,
) -> CairnStatus {
    let outcome = catch(|| {
        // SAFETY: the ABI: `spec` is valid for the call; from here on we own its ctx.
        let procedure = unsafe { read_procedure(spec) }?;
        // SAFETY: as in `host_log`.
        let services = unsafe { services(host) }.ok_or_else(no_host)?;
        services
            .register_procedure(procedure)
            .map(|()| Reply::default())
    });
    // SAFETY: the ABI: `output` is valid for the call.
    unsafe { answer(output, outcome) }
}

/// Takes a procedure spec; on any error its ctx is released.
///
/// # Safety
/// `spec` is null or valid for the call, with `size` telling which fields exist.
unsafe fn read_procedure(spec: *const CairnProcedureSpec) -> Result<ForeignProcedure, PluginError> {
    // SAFETY: guaranteed by the caller.
    let spec = unsafe { spec.as_ref() }
        .ok_or_else(|| PluginError::InvalidArgument("no procedure spec".into()))?;
    let has = |offset| has_pointer_field(spec.size, offset);
    if !has(offset_of!(CairnProcedureSpec, drop_ctx)) {
        return Err(PluginError::InvalidArgument(format!(
            "procedure spec of {} bytes is truncated",
            spec.size
        )));
    }
    // From here on the ctx is ours: an early return releases it.
    let ctx = ForeignCtx {
        ctx: spec.ctx,
        drop_ctx: spec.drop_ctx,
    };
    let Some(call) = spec.call else {
        return Err(PluginError::InvalidArgument(
            "procedure without a call function".into(),
        ));
    };
    let mut procedure = ForeignProcedure {
        name: String::new(),
        description: String::new(),
        columns: Vec::new(),
        ctx,
        call,
    };
    // SAFETY: the spec's strings are borrowed for the call.
    procedure.name = unsafe { super::text(spec.name, "the procedure name") }?;
    // SAFETY: as above.
    procedure.description = unsafe { super::text(spec.description, "the description") }?;
    // SAFETY: the spec's columns are borrowed for the call.
    procedure.columns = unsafe { read_columns(spec.columns, spec.column_count, "column") }?;
    Ok(procedure)
}

/// Copies `count` columns (`what`: "column" or "argument", for errors).
///
/// # Safety
/// `columns` is null (with `count` 0) or points to `count` columns, names included, valid
/// for the call.
unsafe fn read_columns(
    columns: *const abi::CairnColumn,
    count: usize,
    what: &str,
) -> Result<Vec<Column>, PluginError> {
    let columns: &[abi::CairnColumn] = if count == 0 || columns.is_null() {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(columns, count) }
    };
    columns
        .iter()
        .map(|column| {
            // SAFETY: as above.
            let name = unsafe { super::text(column.name, "a column name") }?;
            let ty = ColumnType::from_abi(column.kind).ok_or_else(|| {
                PluginError::InvalidArgument(format!(
                    "{what} {name} has unknown type {}",
                    column.kind
                ))
            })?;
            Ok(Column { name, ty })
        })
        .collect()
}

/// Reads a call's input (`read`: a spec, names), then hands it to this instance's services
/// (`serve`), catching panics, and answers `output`: how the host functions that register or
/// subscribe answer.
///
/// # Safety
/// `host` is a table made by [`HostTable::new`]; `output` is null or valid for the call.
unsafe fn read_and_serve<T>(
    host: *const CairnHost,
    output: *const CairnOutput,
    read: impl FnOnce() -> Result<T, PluginError>,
    serve: impl FnOnce(&Arc<dyn HostServices>, T) -> Result<(), PluginError>,
) -> CairnStatus {
    let outcome = catch(|| {
        // Read first: a spec's ctx is ours from then on, released if anything fails.
        let input = read()?;
        // SAFETY: guaranteed by the caller.
        let services = unsafe { services(host) }.ok_or_else(no_host)?;
        serve(services, input).map(|()| Reply::default())
    });
    // SAFETY: guaranteed by the caller.
    unsafe { answer(output, outcome) }
}

unsafe extern "C" fn host_register_function(
    host: *const CairnHost,
    spec: *const CairnFunctionSpec,
    output: *const CairnOutput,
) -> CairnStatus {
    // SAFETY: the ABI: the table is ours and `output` valid for the call; `spec` is valid for the call.
    unsafe {
        read_and_serve(
            host,
            output,
            || read_function(spec),
            |services, input| services.register_function(input),
        )
    }
}

unsafe extern "C" fn host_register_aggregate(
    host: *const CairnHost,
    spec: *const CairnAggregateSpec,
    output: *const CairnOutput,
) -> CairnStatus {
    // SAFETY: the ABI: the table is ours and `output` valid for the call; `spec` is valid for the call.
    unsafe {
        read_and_serve(
            host,
            output,
            || read_aggregate(spec),
            |services, input| services.register_aggregate(input),
        )
    }
}

unsafe extern "C" fn host_register_table_function(
    host: *const CairnHost,
    spec: *const CairnTableFunctionSpec,
    output: *const CairnOutput,
) -> CairnStatus {
    // SAFETY: the ABI: the table is ours and `output` valid for the call; `spec` is valid for the call.
    unsafe {
        read_and_serve(
            host,
            output,
            || read_table_function(spec),
            |services, input| services.register_table_function(input),
        )
    }
}

/// The most names a change subscription may list.
const SUBSCRIPTION_MAX_NAMES: usize = 1024;

/// Copies `count` borrowed names (`what` for errors).
///
/// # Safety
/// `names` is null (with `count` 0) or points to `count` strings valid for the call.
unsafe fn read_names(
    names: *const CairnStr,
    count: usize,
    what: &str,
) -> Result<Vec<String>, PluginError> {
    if count > SUBSCRIPTION_MAX_NAMES {
        return Err(PluginError::InvalidArgument(format!(
            "at most {SUBSCRIPTION_MAX_NAMES} {what}, not {count}"
        )));
    }
    let names: &[CairnStr] = if count == 0 || names.is_null() {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(names, count) }
    };
    names
        .iter()
        // SAFETY: as above.
        .map(|name| unsafe { super::text(*name, what) })
        .collect()
}

unsafe extern "C" fn host_subscribe_changes(
    host: *const CairnHost,
    databases: *const CairnStr,
    database_count: usize,
    tables: *const CairnStr,
    table_count: usize,
    output: *const CairnOutput,
) -> CairnStatus {
    // SAFETY: the ABI: the table is ours, the names (if any) and `output` are valid for the
    // call.
    unsafe {
        read_and_serve(
            host,
            output,
            || {
                Ok((
                    read_names(databases, database_count, "database names")?,
                    read_names(tables, table_count, "table names")?,
                ))
            },
            |services, (databases, tables)| services.subscribe_changes(databases, tables),
        )
    }
}

unsafe extern "C" fn host_subscribe_statements(
    host: *const CairnHost,
    min_duration_micros: u64,
    output: *const CairnOutput,
) -> CairnStatus {
    // SAFETY: the ABI: the table is ours, the names (if any) and `output` are valid for the
    // call.
    unsafe {
        read_and_serve(
            host,
            output,
            || Ok(min_duration_micros),
            |services, micros| services.subscribe_statements(micros),
        )
    }
}

/// The most arguments a table function may declare.
const TABLE_FUNCTION_MAX_ARGUMENTS: usize = 64;

/// Takes a table function spec; on any error after its size is checked its ctx is released
/// (a spec too short to hold `drop_ctx` cannot say how).
///
/// # Safety
/// `spec` is null or valid for the call, with `size` telling which fields exist.
unsafe fn read_table_function(
    spec: *const CairnTableFunctionSpec,
) -> Result<ForeignTableFunction, PluginError> {
    // SAFETY: guaranteed by the caller.
    let spec = unsafe { spec.as_ref() }
        .ok_or_else(|| PluginError::InvalidArgument("no table function spec".into()))?;
    whole_spec(
        "table function",
        spec.size,
        offset_of!(CairnTableFunctionSpec, drop_ctx),
    )?;
    // From here on the ctx is ours: an early return releases it.
    let ctx = ForeignCtx {
        ctx: spec.ctx,
        drop_ctx: spec.drop_ctx,
    };
    let (Some(open), Some(next), Some(close)) = (spec.open, spec.next, spec.close) else {
        return Err(PluginError::InvalidArgument(
            "a table function needs open, next and close".into(),
        ));
    };
    if spec.argument_count > TABLE_FUNCTION_MAX_ARGUMENTS {
        return Err(PluginError::InvalidArgument(format!(
            "a table function takes at most {TABLE_FUNCTION_MAX_ARGUMENTS} arguments; this one declares {}",
            spec.argument_count
        )));
    }
    // SAFETY: the spec's strings and columns are borrowed for the call.
    let (name, description, columns, arguments) = unsafe {
        (
            super::text(spec.name, "the function name")?,
            super::text(spec.description, "the description")?,
            read_columns(spec.columns, spec.column_count, "column")?,
            read_columns(spec.arguments, spec.argument_count, "argument")?,
        )
    };
    if columns.is_empty() {
        return Err(PluginError::InvalidArgument(format!(
            "table function {name} declares no columns; declare at least one"
        )));
    }
    Ok(ForeignTableFunction {
        name,
        description,
        columns,
        arguments,
        ctx,
        open,
        next,
        close,
    })
}

/// What a function spec and an aggregate spec share, read.
struct SqlFunctionHead {
    name: String,
    description: String,
    arg_count: i32,
    deterministic: bool,
}

/// Checks and copies the fields a function and an aggregate spec share (`what` names the
/// kind in errors).
///
/// # Safety
/// The strings satisfy the [`CairnStr`] rule for the call.
unsafe fn read_head(
    what: &str,
    flags: u32,
    name: CairnStr,
    description: CairnStr,
    arg_count: i32,
) -> Result<SqlFunctionHead, PluginError> {
    if !(-1..=127).contains(&arg_count) {
        return Err(PluginError::InvalidArgument(format!(
            "{what} takes 0 to 127 arguments, or -1 for any number; this one says {arg_count}"
        )));
    }
    Ok(SqlFunctionHead {
        // SAFETY: guaranteed by the caller.
        name: unsafe { super::text(name, "the function name") }?,
        // SAFETY: as above.
        description: unsafe { super::text(description, "the description") }?,
        arg_count,
        deterministic: flags & abi::CAIRN_FUNCTION_DETERMINISTIC != 0,
    })
}

/// A spec of `size` bytes ends after `last_offset`'s pointer field, or is refused.
fn whole_spec(what: &str, size: u32, last_offset: usize) -> Result<(), PluginError> {
    if has_pointer_field(size, last_offset) {
        Ok(())
    } else {
        Err(PluginError::InvalidArgument(format!(
            "{what} spec of {size} bytes is truncated"
        )))
    }
}

/// Takes a function spec; on any error its ctx is released.
///
/// # Safety
/// `spec` is null or valid for the call, with `size` telling which fields exist.
unsafe fn read_function(spec: *const CairnFunctionSpec) -> Result<ForeignFunction, PluginError> {
    // SAFETY: guaranteed by the caller.
    let spec = unsafe { spec.as_ref() }
        .ok_or_else(|| PluginError::InvalidArgument("no function spec".into()))?;
    whole_spec(
        "function",
        spec.size,
        offset_of!(CairnFunctionSpec, drop_ctx),
    )?;
    // From here on the ctx is ours: an early return releases it.
    let ctx = ForeignCtx {
        ctx: spec.ctx,
        drop_ctx: spec.drop_ctx,
    };
    let Some(call) = spec.call else {
        return Err(PluginError::InvalidArgument(
            "function without a call function".into(),
        ));
    };
    // SAFETY: the spec's strings are borrowed for the call.
    let head = unsafe {
        read_head(
            "a function",
            spec.flags,
            spec.name,
            spec.description,
            spec.arg_count,
        )
    }?;
    Ok(ForeignFunction {
        name: head.name,
        description: head.description,
        arg_count: head.arg_count,
        deterministic: head.deterministic,
        ctx,
        call,
    })
}

/// Takes an aggregate spec; on any error its ctx is released.
///
/// # Safety
/// `spec` is null or valid for the call, with `size` telling which fields exist.
unsafe fn read_aggregate(spec: *const CairnAggregateSpec) -> Result<ForeignAggregate, PluginError> {
    // SAFETY: guaranteed by the caller.
    let spec = unsafe { spec.as_ref() }
        .ok_or_else(|| PluginError::InvalidArgument("no aggregate spec".into()))?;
    whole_spec(
        "aggregate",
        spec.size,
        offset_of!(CairnAggregateSpec, drop_ctx),
    )?;
    // From here on the ctx is ours: an early return releases it.
    let ctx = ForeignCtx {
        ctx: spec.ctx,
        drop_ctx: spec.drop_ctx,
    };
    let (Some(start), Some(step), Some(finish)) = (spec.start, spec.step, spec.finish) else {
        return Err(PluginError::InvalidArgument(
            "an aggregate needs start, step and finish".into(),
        ));
    };
    // Fields of 1.9, present only in a spec that long.
    let has = |offset| has_pointer_field(spec.size, offset);
    // Read only when the spec is that long: a shorter one's memory ends before them.
    let value = if has(offset_of!(CairnAggregateSpec, value)) {
        spec.value
    } else {
        None
    };
    let inverse = if has(offset_of!(CairnAggregateSpec, inverse)) {
        spec.inverse
    } else {
        None
    };
    let window = match (value, inverse) {
        (Some(value), Some(inverse)) => Some(Window { value, inverse }),
        (None, None) => None,
        _ => {
            return Err(PluginError::InvalidArgument(
                "a window function needs both value and inverse".into(),
            ));
        }
    };
    // SAFETY: the spec's strings are borrowed for the call.
    let head = unsafe {
        read_head(
            "an aggregate",
            spec.flags,
            spec.name,
            spec.description,
            spec.arg_count,
        )
    }?;
    Ok(ForeignAggregate {
        name: head.name,
        description: head.description,
        arg_count: head.arg_count,
        deterministic: head.deterministic,
        ctx,
        start,
        step,
        finish,
        drop_state: spec.drop_state,
        window,
    })
}

unsafe extern "C" fn host_subscribe(host: *const CairnHost, mask: u64) -> CairnStatus {
    let outcome = catch(|| {
        // SAFETY: as in `host_log`.
        let services = unsafe { services(host) }.ok_or_else(no_host)?;
        services.subscribe(mask)
    });
    if outcome.is_ok() {
        abi::CAIRN_OK
    } else {
        abi::CAIRN_ERROR
    }
}

unsafe extern "C" fn host_schedule(
    host: *const CairnHost,
    spec: *const CairnJobSpec,
    output: *const CairnOutput,
) -> CairnStatus {
    let outcome = catch(|| {
        // SAFETY: the ABI: `spec` is valid for the call; from here on we own its ctx.
        let job = unsafe { read_job(spec) }?;
        // SAFETY: as in `host_log`.
        let services = unsafe { services(host) }.ok_or_else(no_host)?;
        services.schedule(job).map(|()| Reply::default())
    });
    // SAFETY: the ABI: `output` is valid for the call.
    unsafe { answer(output, outcome) }
}

/// Takes a job spec; on any error its ctx is released.
///
/// # Safety
/// As for [`read_procedure`].
unsafe fn read_job(spec: *const CairnJobSpec) -> Result<ForeignJob, PluginError> {
    // SAFETY: guaranteed by the caller.
    let spec = unsafe { spec.as_ref() }
        .ok_or_else(|| PluginError::InvalidArgument("no job spec".into()))?;
    if !has_pointer_field(spec.size, offset_of!(CairnJobSpec, drop_ctx)) {
        return Err(PluginError::InvalidArgument(format!(
            "job spec of {} bytes is truncated",
            spec.size
        )));
    }
    let ctx = ForeignCtx {
        ctx: spec.ctx,
        drop_ctx: spec.drop_ctx,
    };
    let Some(run) = spec.run else {
        return Err(PluginError::InvalidArgument(
            "job without a run function".into(),
        ));
    };
    let mut job = ForeignJob {
        name: String::new(),
        cron: String::new(),
        ctx,
        run,
    };
    // SAFETY: the spec's strings are borrowed for the call.
    job.name = unsafe { super::text(spec.name, "the job name") }?;
    // SAFETY: as above.
    job.cron = unsafe { super::text(spec.cron, "the cron expression") }?;
    Ok(job)
}

unsafe extern "C" fn host_sleep(host: *const CairnHost, millis: u64) -> CairnFuture {
    let started = catch(|| {
        // SAFETY: as in `host_log`.
        let services = unsafe { services(host) }.ok_or_else(no_host)?;
        Ok(services.sleep(Duration::from_millis(millis)))
    });
    start(started)
}

/// Hands an asynchronous host function's future (or the error that kept it from starting)
/// to the plugin.
fn start(started: Result<BoxOutcome, PluginError>) -> CairnFuture {
    match started {
        Ok(future) => export_future(future),
        Err(e) => super::future::ready(Err(e)),
    }
}

fn no_host() -> PluginError {
    PluginError::InvalidArgument("called without the host table it was given".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, version: &str, description: &str) -> DescriptorInfo {
        DescriptorInfo {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            abi_major: abi::CAIRN_ABI_MAJOR,
            abi_minor: abi::CAIRN_ABI_MINOR,
            min_host_minor: 0,
        }
    }

    fn refusal(name: &str, version: &str, description: &str) -> String {
        match check_info(&info(name, version, description), Path::new("libx.so")) {
            Ok(()) => panic!("accepted {name:?} {version:?} {description:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Descriptor strings forged log lines or broke SQL (issue 15, item 10): names follow
    /// the identifier rule, versions and descriptions are printable and bounded.
    #[test]
    fn descriptor_strings_are_identifiers_and_bounded_printable_text() {
        assert!(check_info(&info("hello_2", "1.0.0", "Says hello"), Path::new("x")).is_ok());
        for name in ["", "Hello", "2fast", "a-b", "a\nb", "é", &"a".repeat(64)] {
            assert!(
                refusal(name, "1.0", "d").contains("is not an identifier"),
                "{name:?}"
            );
        }
        assert!(refusal("x", "", "d").contains("1 to 64 bytes"));
        assert!(refusal("x", &"9".repeat(65), "d").contains("1 to 64 bytes"));
        assert!(refusal("x", "1.0", &"d".repeat(1025)).contains("1 to 1024 bytes"));
        for forged in ["1.0\nINFO all is well", "1.0\r", "1\t0", "1.0\u{1b}[2J"] {
            assert!(
                refusal("x", forged, "d").contains("control characters"),
                "{forged:?}"
            );
            assert!(
                refusal("x", "1.0", forged).contains("control characters"),
                "{forged:?}"
            );
        }
    }
}

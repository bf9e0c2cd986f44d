//! Fuzzing jocky on the stable toolchain (no coverage guidance): a seeded,
//! deterministic mutation engine over a committed seed corpus of real bytes
//! (record runs and payloads cut from real container files, real file headers,
//! real segment files) and over real folders built in memory, with every
//! execution checked for panics ([`std::panic::catch_unwind`] and a panic hook),
//! hangs (a watchdog) and unbounded allocation (a counting global allocator,
//! [`alloc::CountingAlloc`]).
//!
//! Targets: `records` ([`jocky::testing::decode::decode_records`]), `payload`
//! (`decode_payload`, first input byte = record kind), `header`
//! (`decode_file_header`), `segment` (`decode_segment_file`) and `open`
//! (`JockyDirectory`/`Store` over a mutated copy of a real folder on
//! `SimStorage`, then every listed file read and `verify_segments`).
//!
//! The only feedback is cheap: a mutant that made its decoder get further than
//! the input it came from (more records, a table that decoded) joins an
//! in-memory corpus.

pub mod alloc;
pub mod corpus;
pub mod folders;
pub mod mutate;
pub mod runner;
pub mod watch;

/// What is fuzzed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Target {
    /// A run of container records.
    Records = 0,
    /// One record payload; the first byte is the record kind.
    Payload = 1,
    /// A container file header.
    Header = 2,
    /// A whole segment file (trailer and table).
    Segment = 3,
    /// Opening a mutated real folder.
    Open = 4,
}

impl Target {
    /// Every target, decoders first.
    pub const ALL: [Target; 5] = [
        Target::Records,
        Target::Payload,
        Target::Header,
        Target::Segment,
        Target::Open,
    ];
    /// The decoder targets.
    pub const DECODERS: [Target; 4] = [
        Target::Records,
        Target::Payload,
        Target::Header,
        Target::Segment,
    ];

    /// Its name on the command line, in corpus folders and finding files.
    pub fn name(self) -> &'static str {
        match self {
            Target::Records => "records",
            Target::Payload => "payload",
            Target::Header => "header",
            Target::Segment => "segment",
            Target::Open => "open",
        }
    }

    /// The target of a name.
    pub fn from_name(s: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == s)
    }

    pub(crate) fn from_u8(v: u8) -> Target {
        Target::ALL
            .get(v as usize)
            .copied()
            .unwrap_or(Target::Records)
    }

    /// Whether this is one of the four decoder targets.
    pub fn is_decoder(self) -> bool {
        self != Target::Open
    }
}

//! Built-in fakes of the outside world, over real HTTP on 127.0.0.1: the demo, the tests and the benchmarks
//! all use these, so there is one implementation of each peer's semantics.

pub mod channex;
mod observed;
pub mod ota;
pub mod pms;
pub mod pms_api;
pub mod pushes;
pub mod samples;
pub mod staah;
pub mod staff;

pub use channex::FakeChannex;
pub use ota::conversations::ReplyFault;
pub use ota::{Endpoint, FakeAuth, FakeOta, FakeOtaOptions, Fault, Gate, HoldPoint, OtaState};
pub use pms::{FakePms, FakePmsOptions, PmsReply, PmsState};
pub use pushes::{PushCredentials, PushSample, Senders};
pub use samples::{SampleMessage, commit_as_batch, guest_message, poison_message};
pub use staah::{FakeStaah, StaahAnswer};

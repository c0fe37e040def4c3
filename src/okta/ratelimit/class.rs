//! The request classes: why a request is made, its priority tier, and which classes are
//! background work held to the ceiling.

/// Why a request is made; decides who goes first when a bucket's calls are scarce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// A System Log poll: detection stalls without it.
    Poll,
    /// Reading back the app user of a retry already posted: the push was paid for, and the
    /// answer decides whether a person is told.
    ReadBack,
    /// A retry of a failure whose operation is urgent (deprovisioning).
    UrgentRetry,
    /// Any other automatic retry.
    Retry,
    /// A command a person ran (`retry`, `status`'s look-ups).
    Manual,
    /// An assignment scan page or its app list.
    Scan,
    /// `doctor`'s checks.
    Doctor,
    /// A periodic reconciliation (background consistency checks).
    Reconcile,
}

/// Number of priority tiers ([`Class::tier`]).
pub const TIERS: usize = 5;

/// The least share of the daemon's budget of a window any class below the top is guaranteed
/// when it asks (spread over the window).
pub const FLOOR_SHARE: f64 = 0.10;

impl Class {
    pub const ALL: [Class; 8] = [
        Class::Poll,
        Class::ReadBack,
        Class::UrgentRetry,
        Class::Retry,
        Class::Manual,
        Class::Scan,
        Class::Doctor,
        Class::Reconcile,
    ];

    /// 0 goes first. Classes sharing a tier are served first come, first served.
    pub fn tier(self) -> usize {
        match self {
            Class::Poll | Class::ReadBack => 0,
            Class::UrgentRetry => 1,
            Class::Retry => 2,
            Class::Manual => 3,
            Class::Scan | Class::Doctor | Class::Reconcile => 4,
        }
    }

    /// Scans, `doctor`, reconciliations: capped by the background ceiling.
    pub fn is_background(self) -> bool {
        self.tier() == TIERS - 1
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Poll => "poll",
            Class::ReadBack => "read_back",
            Class::UrgentRetry => "urgent_retry",
            Class::Retry => "retry",
            Class::Manual => "manual",
            Class::Scan => "scan",
            Class::Doctor => "doctor",
            Class::Reconcile => "reconcile",
        }
    }
}

//! Reason codes carried by NACK, CLOSE and ABORT (spec §5.3–§5.5). Codes this
//! version does not name are kept as `Other(code)` so they can be counted and
//! logged, never rejected: new reasons are added without a version bump.

use core::fmt;

macro_rules! reason_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $code:literal => $label:literal, )* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A code this version does not name, preserved as received.
            Other(u16),
        }

        impl $name {
            /// Every named reason.
            pub const NAMED: &'static [$name] = &[$($name::$variant,)*];

            /// The reason for a wire code.
            pub fn from_u16(code: u16) -> $name {
                match code {
                    $( $code => $name::$variant, )*
                    other => $name::Other(other),
                }
            }

            /// The wire code.
            pub fn to_u16(self) -> u16 {
                match self {
                    $( $name::$variant => $code, )*
                    $name::Other(code) => code,
                }
            }

            /// A stable snake_case label for metrics and logs (`"other"` for unnamed codes).
            pub fn label(self) -> &'static str {
                match self {
                    $( $name::$variant => $label, )*
                    $name::Other(_) => "other",
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $name::Other(code) => write!(f, "other({code})"),
                    named => f.write_str(named.label()),
                }
            }
        }

        impl From<u16> for $name {
            fn from(code: u16) -> $name {
                $name::from_u16(code)
            }
        }

        impl From<$name> for u16 {
            fn from(r: $name) -> u16 {
                r.to_u16()
            }
        }
    };
}

reason_enum! {
    /// Why an agent refused a CREATE (the paper's THOP_NOTIFYDROP). Spec §5.3.
    NackReason {
        /// The agent's adoption queue is full; try another backend.
        BacklogFull = 1 => "backlog_full",
        /// Nothing on this backend serves the virtual address and port.
        NoSuchService = 2 => "no_such_service",
        /// The kernel refused to restore the TCP state (TCP_REPAIR failed).
        RepairFailed = 3 => "repair_failed",
        /// The TCP state in the CREATE is inconsistent or unusable.
        BadState = 4 => "bad_state",
        /// The agent is above its capacity; try another backend.
        Overloaded = 5 => "overloaded",
        /// The agent is draining or stopping.
        ShuttingDown = 6 => "shutting_down",
        /// The frame's version is not spoken here; the NACK lists the versions that are.
        UnsupportedVersion = 7 => "unsupported_version",
        /// The request is larger than the agent's reassembly limit.
        RequestTooLarge = 8 => "request_too_large",
        /// The client 4-tuple already belongs to another local connection.
        AddressInUse = 9 => "address_in_use",
        /// The frame's opcode is not spoken here.
        UnsupportedOpcode = 10 => "unsupported_opcode",
        /// The agent's reassembly memory is exhausted.
        NoMemory = 11 => "no_memory",
        /// Any other local failure.
        Internal = 12 => "internal",
    }
}

reason_enum! {
    /// Why an adopted connection ended (the paper's THOP_NOTIFYCLS). Spec §5.4.
    CloseReason {
        /// Orderly close after the client's FIN.
        ClientFin = 1 => "client_fin",
        /// The client reset the connection.
        ClientReset = 2 => "client_reset",
        /// The connection was idle longer than the agent's limit.
        IdleTimeout = 3 => "idle_timeout",
        /// The server application closed first (orderly).
        ServerClose = 4 => "server_close",
        /// The server application or the local stack reset the connection.
        ServerReset = 5 => "server_reset",
        /// The switch sent ABORT.
        Aborted = 6 => "aborted",
        /// The agent is shutting down.
        Shutdown = 7 => "shutdown",
        /// The local TCP stack gave up (retransmission timeout, keepalive).
        Timeout = 8 => "timeout",
    }
}

reason_enum! {
    /// Why the switch aborted a handoff or a connection. Spec §5.5.
    AbortReason {
        /// The client reset the connection.
        ClientReset = 1 => "client_reset",
        /// No ACK arrived within the retransmission budget; the switch re-dispatched.
        HandoffTimeout = 2 => "handoff_timeout",
        /// The switch is shutting down.
        Shutdown = 3 => "shutdown",
        /// An operator or policy removed the backend.
        BackendRemoved = 4 => "backend_removed",
        /// The switch's connection entry expired.
        Expired = 5 => "expired",
    }
}

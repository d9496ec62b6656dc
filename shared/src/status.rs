//! One status machine, written once: the [`StatusMachine`] trait holds the
//! rules every status enum shares (allowed moves, checks, names, parsing),
//! and [`status_machine!`] declares an enum that states only its variants,
//! their stored names and its allowed moves. Requests and jobs both use it.
//!
//! The names are what DynamoDB stores and what the API shows; changing one
//! is a data migration.

use thiserror::Error;

/// A status change that the state machine does not allow. Seeing one means a
/// bug in the caller, not bad input or a race (races surface as the store's
/// `ConditionFailed`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("illegal {entity} transition {from} -> {to}")]
pub struct TransitionError {
    /// What moved: `"request"` or `"job"`.
    pub entity: &'static str,
    pub from: &'static str,
    pub to: &'static str,
}

/// A stored status name that no variant has.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown {entity} status {name:?}")]
pub struct UnknownStatus {
    pub entity: &'static str,
    pub name: String,
}

/// The shared rules of a status enum. Implemented by [`status_machine!`];
/// the enum also gets inherent methods of the same names, so callers need
/// not import this trait.
pub trait StatusMachine: Copy + Eq + 'static {
    /// What the statuses belong to, for messages (`"request"`, `"job"`).
    const ENTITY: &'static str;
    /// Every status, in declaration order.
    const ALL: &'static [Self];
    /// Every allowed move, and only those.
    const TRANSITIONS: &'static [(Self, Self)];

    /// The stored and displayed name.
    fn name(self) -> &'static str;

    /// No move leaves this status.
    fn is_final(self) -> bool {
        !Self::TRANSITIONS.iter().any(|(from, _)| *from == self)
    }

    fn allows(self, next: Self) -> bool {
        Self::TRANSITIONS.contains(&(self, next))
    }

    fn check(self, next: Self) -> Result<(), TransitionError> {
        if self.allows(next) {
            Ok(())
        } else {
            Err(TransitionError {
                entity: Self::ENTITY,
                from: self.name(),
                to: next.name(),
            })
        }
    }

    fn from_name(name: &str) -> Result<Self, UnknownStatus> {
        Self::ALL
            .iter()
            .copied()
            .find(|s| s.name() == name)
            .ok_or_else(|| UnknownStatus {
                entity: Self::ENTITY,
                name: name.to_owned(),
            })
    }
}

/// Declares a status enum from its variants, their stored names and its
/// allowed moves:
///
/// ```ignore
/// status_machine! {
///     /// Docs of the enum.
///     pub enum LightStatus for "light" {
///         /// Docs of a variant.
///         Red = "red",
///         Green = "green",
///     }
///     moves { Red -> Green, Green -> Red }
/// }
/// ```
///
/// It derives `Clone, Copy, Debug, PartialEq, Eq, Hash`, implements
/// [`StatusMachine`], `Display`, `FromStr`, serde by name, and inherent
/// `ALL`, `TRANSITIONS`, `as_str`, `is_terminal` (no move out),
/// `can_transition_to` and `check_transition`.
#[macro_export]
macro_rules! status_machine {
    (
        $(#[$meta:meta])*
        $vis:vis enum $Name:ident for $entity:literal {
            $( $(#[$vmeta:meta])* $Variant:ident = $str:literal ),+ $(,)?
        }
        moves { $( $From:ident -> $To:ident ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $Name {
            $( $(#[$vmeta])* $Variant, )+
        }

        impl $crate::status::StatusMachine for $Name {
            const ENTITY: &'static str = $entity;
            const ALL: &'static [Self] = &$Name::ALL;
            const TRANSITIONS: &'static [(Self, Self)] = &[$( (Self::$From, Self::$To) ),+];

            fn name(self) -> &'static str {
                match self {
                    $( Self::$Variant => $str, )+
                }
            }
        }

        #[allow(dead_code)]
        impl $Name {
            /// Every status, in declaration order.
            pub const ALL: [Self; [$( stringify!($Variant) ),+].len()] = [$( Self::$Variant ),+];
            /// Every allowed transition, and only those.
            pub const TRANSITIONS: &'static [(Self, Self)] =
                <Self as $crate::status::StatusMachine>::TRANSITIONS;

            /// The name stored in the database and shown by the API.
            pub fn as_str(self) -> &'static str {
                $crate::status::StatusMachine::name(self)
            }

            /// Terminal: no move leaves this status.
            pub fn is_terminal(self) -> bool {
                $crate::status::StatusMachine::is_final(self)
            }

            pub fn can_transition_to(self, next: Self) -> bool {
                $crate::status::StatusMachine::allows(self, next)
            }

            pub fn check_transition(self, next: Self) -> Result<(), $crate::status::TransitionError> {
                $crate::status::StatusMachine::check(self, next)
            }
        }

        impl ::std::fmt::Display for $Name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $Name {
            // A `String` so the store's row readers (`Result<_, String>`) take it as is.
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <Self as $crate::status::StatusMachine>::from_name(s).map_err(|e| e.to_string())
            }
        }

        impl ::serde::Serialize for $Name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $Name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                <Self as $crate::status::StatusMachine>::from_name(&s).map_err(::serde::de::Error::custom)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    status_machine! {
        /// A two-state machine for the tests.
        pub enum Light for "light" {
            Red = "red",
            Green = "green",
            Off = "off",
        }
        moves { Red -> Green, Green -> Red, Green -> Off }
    }

    #[test]
    fn a_move_is_allowed_exactly_when_listed() {
        assert!(Light::Red.can_transition_to(Light::Green));
        assert!(!Light::Red.can_transition_to(Light::Off));
        assert!(!Light::Off.can_transition_to(Light::Red));
    }

    #[test]
    fn a_refused_move_names_entity_and_both_statuses() {
        let e = Light::Off.check_transition(Light::Red).unwrap_err();
        assert_eq!(e.to_string(), "illegal light transition off -> red");
        assert_eq!((e.entity, e.from, e.to), ("light", "off", "red"));
    }

    #[test]
    fn names_round_trip_through_display_from_str_and_serde() {
        for s in Light::ALL {
            assert_eq!(s.to_string().parse::<Light>().unwrap(), s);
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<Light>(&json).unwrap(), s);
        }
        assert_eq!("blue".parse::<Light>().unwrap_err(), "unknown light status \"blue\"");
        assert!(serde_json::from_str::<Light>("\"blue\"").is_err());
    }

    #[test]
    fn a_status_without_moves_out_is_final() {
        assert!(Light::Off.is_final());
        assert!(!Light::Red.is_final());
    }
}

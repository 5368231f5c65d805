//! The declarations of the configuration's sections and tables: one struct per section
//! (`section!`: its keys, their defaults and docs) or array element (`table!`); the keys'
//! kinds (environment text, file paths, tables) come from the fields' types.

/// Declares a section: the struct serde fills, with every key's default next to it.
macro_rules! section {
    ($(#[$meta:meta])* pub struct $name:ident {
        $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty = $default:expr ),* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Deserialize)]
        #[serde(default)]
        pub struct $name { $( $(#[$fmeta])* pub $field: $ty ),* }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default ),* }
            }
        }

        impl crate::config::parse::Section for $name {
            const KEYS: &'static [(&'static str, crate::config::parse::Kind)] = &[
                $( (stringify!($field), <$ty as crate::config::parse::EnvKind>::KIND) ),*
            ];
        }
    };
}

/// An element of an array of tables (`[[outbound.routes]]`): the struct as written, and
/// its keys and their kinds (through [`crate::config::parse::Section`]: which are file paths, resolved
/// against the configuration's directory, and which the documentation must name).
macro_rules! table {
    ($(#[$meta:meta])* pub struct $name:ident {
        $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty ),* $(,)?
    }) => {
        $(#[$meta])*
        pub struct $name { $( $(#[$fmeta])* pub $field: $ty ),* }

        impl crate::config::parse::Section for $name {
            const KEYS: &'static [(&'static str, crate::config::parse::Kind)] = &[
                $( (stringify!($field), <$ty as crate::config::parse::EnvKind>::KIND) ),*
            ];
        }
    };
}

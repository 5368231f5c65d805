//! Enums whose variants are words — metric label values, log reasons, 401 descriptions —
//! declared once: the enum, every variant in order (`ALL`), and its word, from one list,
//! so that a new variant cannot miss a table (a metric's series made at start, a
//! dashboard's list checked by a test).

/// `words! { /// doc
///     pub enum Outcome as as_str { Ok = "ok", Public = "public", } }`
/// declares the enum (`Clone, Copy, Debug, PartialEq, Eq, Hash`), `Outcome::ALL` and the
/// method named after `as` giving each variant's word; `Display` writes the word.
macro_rules! words {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident as $word:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )*
        }

        impl $name {
            /// Every variant, in declaration order (a variant's index is its discriminant).
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            pub const fn $word(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.$word())
            }
        }
    };
}

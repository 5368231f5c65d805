//! What a policy rule matches (DESIGN.md "Policy"), one small module per field, in
//! linkerd2-proxy's `MatchRequest` shape: a field is either about **who calls**
//! ([`CallerMatch`]: issuers, callers, roles, claims — the same answer for every request
//! presenting the same verified token, so it is found once and kept with the token) or
//! about **what is asked** ([`RequestMatch`]: methods, paths, hosts — checked on every
//! request). The two see different facts ([`CallerFacts`], [`RequestFacts`]): a field
//! about the request cannot be put among the cached ones by mistake, it would not
//! compile.
//!
//! [`Rule`] is declared by `rule!` from the two lists of fields: its struct, the order
//! the fields are checked in, the list of field names (`check` and the docs read it) and
//! emptiness all come from that one declaration. A new field is a module here and one
//! line in the declaration.
use http::{Method, Request};
use serde::Deserialize;

use crate::http::host::{host_of, RequestHost};
use crate::token::{Person, Verified};

mod callers;
mod claims;
mod context;
mod hosts;
mod issuers;
mod methods;
mod paths;
mod roles;
mod users;

pub use callers::Callers;
pub use claims::{claim_matches, ClaimPointer, Claims};
pub use context::Context;
pub use hosts::{HostPattern, Hosts};
pub use issuers::{source_name, Sources};
pub use methods::Methods;
pub use paths::{PathPattern, Paths};
pub use roles::Roles;
pub use users::Users;

/// Who calls: the verified token and what `[callers.<name>]` grants its caller.
#[derive(Clone, Copy)]
pub struct CallerFacts<'a> {
    pub verified: &'a Verified,
    /// What `[callers.<name>]` grants the caller.
    pub roles: &'a [String],
}

/// What is asked, of one request.
#[derive(Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    /// The path as the app will route it (canonical: checked before).
    pub path: &'a str,
    /// Where the host is read from, when a rule asks ([`RequestFacts::host`]): most rules
    /// do not, and a request's rules then cost no header lookup.
    host: HostFrom<'a>,
    /// The person the request is made for (a person's token, or a transaction token).
    pub person: Option<&'a Person>,
}

#[derive(Clone, Copy)]
enum HostFrom<'a> {
    Request(&'a http::HeaderMap, &'a http::Uri),
    Known(RequestHost<'a>),
}

impl<'a> RequestFacts<'a> {
    pub fn of<B>(req: &'a Request<B>, person: Option<&'a Person>) -> Self {
        RequestFacts {
            method: req.method(),
            path: crate::http::path::rule_path(req),
            host: HostFrom::Request(req.headers(), req.uri()),
            person,
        }
    }

    /// The host as the app will read it ([`crate::http::host`]).
    pub fn host(&self) -> RequestHost<'a> {
        match self.host {
            HostFrom::Request(headers, uri) => host_of(headers, uri),
            HostFrom::Known(h) => h,
        }
    }
}

/// What the rules are matched against: one request, its verified caller (`None`: a
/// person's token only, at an edge whose `[inbound.users] callers = "optional"`), and the
/// person it is made for, if any.
#[derive(Clone, Copy)]
pub struct Subject<'a> {
    pub caller: Option<CallerFacts<'a>>,
    pub request: RequestFacts<'a>,
}

/// Why a field about the caller does not match a request without one.
pub const NO_CALLER: &str = "the request has no caller (a person's token only): a rule naming issuers, callers, roles or claims does not match it";
/// Why a field about the person does not match a request without one.
pub const NO_PERSON: &str =
    "the request is made for no person: a rule naming users or context does not match it";

impl<'a> Subject<'a> {
    /// A request of `method` on `path` naming no host, by `verified` with `roles`.
    pub fn plain(
        verified: &'a Verified,
        roles: &'a [String],
        method: &'a Method,
        path: &'a str,
    ) -> Self {
        Subject {
            caller: Some(CallerFacts { verified, roles }),
            request: RequestFacts {
                method,
                path,
                host: HostFrom::Known(RequestHost::Absent),
                person: None,
            },
        }
    }
}

/// A field of a rule.
pub trait Field: std::fmt::Debug {
    /// Whether the rule gives it (a field not given matches everything).
    fn is_given(&self) -> bool;
    /// Why it did not match `s`, in words (`trustgate explain`).
    fn explain(&self, why: Why, rule: &Rule, s: &Subject) -> String;
}

/// A field about who calls.
pub trait CallerMatch: Field {
    fn check(&self, rule: &Rule, c: &CallerFacts) -> Result<(), Why<'_>>;
}

/// A field about the request.
pub trait RequestMatch: Field {
    fn check(&self, r: &RequestFacts) -> Result<(), Why<'_>>;
}

/// Why a field did not match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why<'r> {
    /// The value is not among the field's.
    NotIn,
    /// The claim is there and none of the rule's values.
    Claim(&'r ClaimPointer),
    /// No claim at that pointer.
    ClaimAbsent(&'r ClaimPointer),
    /// The token's source is not one the rule reads claims from (a claim it cannot
    /// vouch for is a claim absent).
    ClaimUnread(&'r ClaimPointer),
    /// The request does not say clearly (no `Host` field, or two): an allow rule does
    /// not match it, a deny rule refuses it (only once every other field matched).
    Unclear,
    /// A field about the caller, and the request has none.
    NoCaller,
    /// A field about the person, and the request is made for none.
    NoPerson,
}

/// The first field of a rule that did not match.
#[derive(Clone, Copy, Debug)]
pub struct Miss<'r> {
    /// The field's name; `None`: found from the token's memo (callers, roles or claims
    /// did not match this token).
    field: Option<(&'static str, &'r dyn Field)>,
    pub why: Why<'r>,
}

impl<'r> Miss<'r> {
    fn of(name: &'static str, field: &'r dyn Field, why: Why<'r>) -> Self {
        Miss {
            field: Some((name, field)),
            why,
        }
    }

    /// A rule whose caller fields the token's memo says do not match.
    pub fn token() -> Self {
        Miss {
            field: None,
            why: Why::NotIn,
        }
    }

    /// The field (`"paths"`), or `"token"` for a miss found from the token's memo.
    pub fn field(&self) -> &'static str {
        self.field.map_or("token", |(name, _)| name)
    }

    /// Why, in words (`trustgate explain`).
    pub fn explain(&self, rule: &Rule, s: &Subject) -> String {
        match (self.field, self.why) {
            (_, Why::NoCaller) => NO_CALLER.into(),
            (_, Why::NoPerson) => NO_PERSON.into(),
            (Some((_, field)), why) => field.explain(why, rule, s),
            (None, _) => "its callers, roles or claims do not match this token".into(),
        }
    }
}

/// Declares [`Rule`] from its fields: about the caller (checked in this order, cached per
/// token), then about the request (checked per request).
macro_rules! rule {
    (
        caller { $( $(#[$cm:meta])* $c:ident: $ct:ty, )* }
        request { $( $(#[$rm:meta])* $r:ident: $rt:ty, )* }
    ) => {
        /// One `[[inbound.allow]]` or `[[inbound.deny]]` rule: it matches when every field
        /// it gives matches.
        #[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
        #[serde(default)]
        pub struct Rule {
            /// Default: `allow[0]`, `deny[1]` (as configuration errors name them), filled
            /// in by the check pass.
            pub name: String,
            $( $(#[$cm])* pub $c: $ct, )*
            $( $(#[$rm])* pub $r: $rt, )*
            /// Evaluated, logged and counted, deciding nothing: a dry run.
            pub audit: bool,
        }

        impl Rule {
            /// The fields that match, in the order they are checked.
            pub const FIELDS: &'static [&'static str] =
                &[$(stringify!($c),)* $(stringify!($r),)*];

            /// Names nothing to match: it would match every request.
            pub fn is_empty(&self) -> bool {
                true $(&& !self.$c.is_given())* $(&& !self.$r.is_given())*
            }

            /// The fields about who calls; without a caller, none given may be.
            pub fn caller_part(&self, c: Option<&CallerFacts>) -> Result<(), Miss<'_>> {
                $(
                    match c {
                        Some(c) => CallerMatch::check(&self.$c, self, c)
                            .map_err(|why| Miss::of(stringify!($c), &self.$c, why))?,
                        None if self.$c.is_given() => {
                            return Err(Miss::of(stringify!($c), &self.$c, Why::NoCaller))
                        }
                        None => {}
                    }
                )*
                Ok(())
            }

            /// The fields about the request. A field the request does not say clearly
            /// is reported only when every other one matched.
            pub fn request_part(&self, r: &RequestFacts) -> Result<(), Miss<'_>> {
                let mut unclear = None;
                $(
                    match RequestMatch::check(&self.$r, r) {
                        Ok(()) => {}
                        Err(Why::Unclear) => {
                            unclear = unclear
                                .or(Some(Miss::of(stringify!($r), &self.$r, Why::Unclear)));
                        }
                        Err(why) => return Err(Miss::of(stringify!($r), &self.$r, why)),
                    }
                )*
                unclear.map_or(Ok(()), Err)
            }
        }
    };
}

rule! {
    caller {
        /// The sources whose tokens the rule matches and whose claims it reads: names of
        /// `[[trust.issuers]]`, `"self"` for callers' own keys. Not given: every source
        /// matches, and claims are read from the issuers' tokens only.
        issuers: Sources,
        callers: Callers,
        /// Granted by `[callers.<name>].roles`.
        roles: Roles,
        /// JSON Pointer into the verified claims → the values that match.
        claims: Claims,
    }
    request {
        methods: Methods,
        paths: Paths,
        hosts: Hosts,
        /// The person's subject (`["*"]`: any verified person).
        users: Users,
        /// The transaction's context (`tctx`) → the values that match.
        context: Context,
    }
}

impl Rule {
    /// Whether the rule matches `s`: every field it gives.
    pub fn check(&self, s: &Subject) -> Result<(), Miss<'_>> {
        self.caller_part(s.caller.as_ref())?;
        self.request_part(&s.request)
    }
}

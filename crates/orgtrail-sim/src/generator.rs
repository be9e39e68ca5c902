//! Deterministic generator of realistic Atlassian organization audit events.
//!
//! Every event is serialized to JSON exactly once, here, in the `/events-stream` form (with
//! `attributes.processedAt`). The `/events` form is the same bytes with the fixed-length
//! `"processedAt":"…",` segment cut out, so no second copy is kept.
//!
//! An event is a function of `(seed, org, index, processedAt)`, so generation parallelizes without
//! changing the output, and a seed replays exactly the same events.

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::rng::{Rng, hex, mix, uuid_string};
use crate::time::{rfc3339_millis, rfc3339_seconds};

/// Product of an action, as used by the `/events` `product` filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Product {
    /// Organization-level (no product).
    None = 0,
    /// Jira.
    Jira = 1,
    /// Confluence.
    Confluence = 2,
    /// Bitbucket.
    Bitbucket = 3,
    /// Loom.
    Loom = 4,
    /// Guard Detect.
    GuardDetect = 5,
}

impl Product {
    /// The `product` filter value.
    pub fn as_str(self) -> &'static str {
        match self {
            Product::None => "",
            Product::Jira => "jira",
            Product::Confluence => "confluence",
            Product::Bitbucket => "bitbucket",
            Product::Loom => "loom",
            Product::GuardDetect => "guard_detect",
        }
    }

    /// Parses a `product` filter value.
    pub fn parse(s: &str) -> Option<Product> {
        Some(match s {
            "jira" => Product::Jira,
            "confluence" => Product::Confluence,
            "bitbucket" => Product::Bitbucket,
            "loom" => Product::Loom,
            "guard_detect" => Product::GuardDetect,
            _ => return None,
        })
    }
}

/// What an action's `context` (the "what") holds.
#[derive(Clone, Copy, Debug)]
enum Ctx {
    /// No context at all (org-level events): `[]` or missing.
    Empty,
    User,
    Group,
    UserAndGroup,
    UserAndProduct,
    GroupAndProduct,
    Token,
    App,
    Policy,
    Space,
    SpaceAndGroup,
    Issue,
    Page,
    InvitedUser,
    Site,
    Domain,
    Repository,
    Video,
    Alert,
    Agent,
}

/// Where an action happens (`container`).
#[derive(Clone, Copy, Debug)]
enum Cont {
    None,
    Org,
    Site,
    SiteAndOrg,
}

/// One action of the catalogue.
#[derive(Debug)]
pub struct ActionDef {
    /// The action id (snake_case), as in `attributes.action`.
    pub id: &'static str,
    /// Display name, as `/event-actions` returns it (localized in the real API).
    pub display: &'static str,
    /// Group display name.
    pub group: &'static str,
    /// Product, for the `/events` product filter.
    pub product: Product,
    ctx: Ctx,
    cont: Cont,
    /// Relative frequency.
    weight: u32,
    /// Probability that the actor is an app/system actor rather than a user.
    app_actor: f64,
}

macro_rules! a {
    ($id:literal, $d:literal, $g:literal, $p:ident, $c:ident, $k:ident, $w:literal, $app:literal) => {
        ActionDef {
            id: $id,
            display: $d,
            group: $g,
            product: Product::$p,
            ctx: Ctx::$c,
            cont: Cont::$k,
            weight: $w,
            app_actor: $app,
        }
    };
}

/// The action catalogue served by `/event-actions` and used by the generator.
pub static ACTIONS: &[ActionDef] = &[
    a!(
        "user_login",
        "User logged in",
        "Authentication",
        None,
        Empty,
        Org,
        120,
        0.0
    ),
    a!(
        "user_logout",
        "User logged out",
        "Authentication",
        None,
        Empty,
        Org,
        40,
        0.0
    ),
    a!(
        "user_login_failed",
        "User login failed",
        "Authentication",
        None,
        Empty,
        None,
        25,
        0.0
    ),
    a!(
        "user_logged_in_as_user",
        "Logged in as user",
        "Authentication",
        None,
        User,
        Org,
        3,
        0.0
    ),
    a!(
        "twosv_disabled_for_user",
        "Two-step verification disabled",
        "Security",
        None,
        User,
        Org,
        3,
        0.0
    ),
    a!(
        "user_created",
        "User created",
        "User management",
        None,
        User,
        Org,
        12,
        0.3
    ),
    a!(
        "user_invitation_sent",
        "User invited",
        "User management",
        None,
        InvitedUser,
        Site,
        10,
        0.0
    ),
    a!(
        "user_deactivated",
        "User deactivated",
        "User management",
        None,
        User,
        Org,
        5,
        0.1
    ),
    a!(
        "user_reactivated",
        "User reactivated",
        "User management",
        None,
        User,
        Org,
        2,
        0.0
    ),
    a!(
        "user_suspended",
        "User access suspended",
        "User management",
        None,
        User,
        Org,
        2,
        0.0
    ),
    a!(
        "user_removed_from_org",
        "User removed from organization",
        "User management",
        None,
        User,
        Org,
        2,
        0.0
    ),
    a!(
        "user_profile_viewed",
        "User profile viewed",
        "User management",
        None,
        User,
        Org,
        15,
        0.0
    ),
    a!(
        "organization_users_viewed",
        "Organization users viewed",
        "User management",
        None,
        Empty,
        Org,
        15,
        0.0
    ),
    a!(
        "group_created",
        "Group created",
        "Group management",
        None,
        Group,
        Org,
        6,
        0.2
    ),
    a!(
        "group_deleted",
        "Group deleted",
        "Group management",
        None,
        Group,
        Org,
        2,
        0.1
    ),
    a!(
        "group_member_added",
        "User added to group",
        "Group management",
        None,
        UserAndGroup,
        Org,
        30,
        0.4
    ),
    a!(
        "group_member_removed",
        "User removed from group",
        "Group management",
        None,
        UserAndGroup,
        Org,
        10,
        0.4
    ),
    a!(
        "user_granted_role",
        "Granted role to user",
        "Product access",
        None,
        UserAndProduct,
        SiteAndOrg,
        20,
        0.1
    ),
    a!(
        "user_revoked_role",
        "Revoked role from user",
        "Product access",
        None,
        UserAndProduct,
        SiteAndOrg,
        8,
        0.1
    ),
    a!(
        "group_granted_admin_access",
        "Group granted admin access",
        "Product access",
        None,
        GroupAndProduct,
        Site,
        2,
        0.0
    ),
    a!(
        "added_org_admin",
        "Organization admin added",
        "Organization",
        None,
        User,
        Org,
        1,
        0.0
    ),
    a!(
        "org_settings_update",
        "Organization settings updated",
        "Organization",
        None,
        Empty,
        Org,
        3,
        0.0
    ),
    a!(
        "authentication_policy_update",
        "Authentication policy updated",
        "Security",
        None,
        Policy,
        Org,
        2,
        0.0
    ),
    a!(
        "data_security_policy_update",
        "Data security policy updated",
        "Security",
        None,
        Policy,
        Org,
        1,
        0.0
    ),
    a!(
        "ip_allowlist_policy_update",
        "IP allowlist updated",
        "Security",
        None,
        Policy,
        Org,
        1,
        0.0
    ),
    a!(
        "domain_verified",
        "Domain verified",
        "Organization",
        None,
        Domain,
        Org,
        1,
        0.0
    ),
    a!(
        "api_token_created",
        "API token created",
        "API tokens",
        None,
        Token,
        Org,
        6,
        0.0
    ),
    a!(
        "api_token_revoked",
        "API token revoked",
        "API tokens",
        None,
        Token,
        Org,
        3,
        0.0
    ),
    a!(
        "marketplace_app_installed",
        "App installed",
        "Apps",
        Jira,
        App,
        Site,
        3,
        0.2
    ),
    a!(
        "marketplace_app_uninstalled",
        "App uninstalled",
        "Apps",
        Jira,
        App,
        Site,
        1,
        0.2
    ),
    a!(
        "jira_issue_viewed",
        "Issue viewed",
        "Jira",
        Jira,
        Issue,
        Site,
        60,
        0.0
    ),
    a!(
        "jira_issue_created",
        "Issue created",
        "Jira",
        Jira,
        Issue,
        Site,
        20,
        0.05
    ),
    a!(
        "confluence_page_viewed",
        "Page viewed",
        "Confluence",
        Confluence,
        Page,
        Site,
        40,
        0.0
    ),
    a!(
        "confluence_added_space_permission",
        "Space permission added",
        "Confluence",
        Confluence,
        SpaceAndGroup,
        Site,
        6,
        0.0
    ),
    a!(
        "confluence_audit_record_removed_content_restriction",
        "Content restriction removed",
        "Confluence",
        Confluence,
        Page,
        Site,
        4,
        0.5
    ),
    a!(
        "confluence_space_created",
        "Space created",
        "Confluence",
        Confluence,
        Space,
        Site,
        2,
        0.0
    ),
    a!(
        "bitbucket_repository_created",
        "Repository created",
        "Bitbucket",
        Bitbucket,
        Repository,
        Site,
        3,
        0.0
    ),
    a!(
        "bitbucket_repository_permission_changed",
        "Repository permission changed",
        "Bitbucket",
        Bitbucket,
        Repository,
        Site,
        2,
        0.0
    ),
    a!(
        "loom_video_shared_publicly",
        "Video shared publicly",
        "Loom",
        Loom,
        Video,
        Site,
        3,
        0.0
    ),
    a!(
        "guard_detect_alert_created",
        "Alert created",
        "Guard Detect",
        GuardDetect,
        Alert,
        Org,
        2,
        0.8
    ),
    a!(
        "rovo_agent_created",
        "Agent created",
        "Rovo",
        None,
        Agent,
        Site,
        2,
        0.0
    ),
    a!(
        "site_created",
        "Site created",
        "Organization",
        None,
        Site,
        Org,
        1,
        0.0
    ),
];

/// Index of an action id in [`ACTIONS`].
pub fn action_index(id: &str) -> Option<u16> {
    ACTIONS.iter().position(|a| a.id == id).map(|i| i as u16)
}

const FIRST: &[&str] = &[
    "Riley", "Sam", "Alex", "Jordan", "Taylor", "Morgan", "Casey", "Jamie", "Avery", "Quinn",
    "Priya", "Wei", "Lucía", "Mateus", "Aiko", "Olamide", "Zoë", "Björn", "Nadia", "Omar",
];
const LAST: &[&str] = &[
    "Admin",
    "Member",
    "Nguyen",
    "Smith",
    "García",
    "Müller",
    "Kowalski",
    "Tanaka",
    "Okafor",
    "Haddad",
    "Johansson",
    "Patel",
    "O'Brien",
    "Silva",
    "Kim",
    "Dubois",
];
const DOMAINS: &[&str] = &["example.com", "example.org", "corp.example.net"];
const GROUPS: &[&str] = &[
    "contractors",
    "jira-software-users",
    "confluence-users",
    "site-admins",
    "org-admins",
    "engineering",
    "security",
    "finance",
    "marketing",
    "support-team",
    "bitbucket-users",
    "external-partners",
    "interns",
    "sre-oncall",
    "design",
];
const PRODUCTS: &[(&str, &str)] = &[
    ("jira-software", "Jira"),
    ("confluence", "Confluence"),
    ("jira-servicedesk", "Jira Service Management"),
    ("bitbucket", "Bitbucket"),
    ("loom", "Loom"),
];
const ROLES: &[&str] = &[
    "product-user",
    "product-admin",
    "site-admin",
    "user-access-admin",
];
const APPS: &[&str] = &[
    "Tempo Timesheets",
    "ScriptRunner for Jira",
    "draw.io Diagrams",
    "Zephyr Scale",
    "Okta SCIM",
    "Slack for Jira",
    "Gliffy",
    "Xray Test Management",
];
/// (city, region, country, continent geo)
const LOCATIONS: &[(&str, &str, &str, &str)] = &[
    ("Sampleton", "North", "Exampleland", "EU"),
    ("Sydney", "New South Wales", "Australia", "OC"),
    ("San Francisco", "California", "United States", "NA"),
    ("Amsterdam", "North Holland", "Netherlands", "EU"),
    ("Berlin", "Berlin", "Germany", "EU"),
    ("Bengaluru", "Karnataka", "India", "AS"),
    ("Austin", "Texas", "United States", "NA"),
    ("Toronto", "Ontario", "Canada", "NA"),
    ("Tokyo", "Tokyo", "Japan", "AS"),
    ("London", "England", "United Kingdom", "EU"),
    ("São Paulo", "São Paulo", "Brazil", "SA"),
    ("Kraków", "Lesser Poland", "Poland", "EU"),
];
const SETTINGS: &[&str] = &[
    "sessionDuration",
    "idleSessionTimeout",
    "twoStepVerificationEnforced",
    "passwordMinLength",
    "allowedDomains",
    "externalSharing",
    "publicLinks",
    "anonymousAccess",
    "mobileAppAccess",
    "dataResidencyRealm",
    "ipAllowlist",
    "userApiTokenCreation",
];

/// Per-org pools of users, apps, sites... that events draw from, so actors and IPs repeat the way
/// they do in a real organization.
#[derive(Debug)]
pub struct OrgPools {
    /// Org id (UUID string).
    pub org_id: String,
    org_name: String,
    users: Vec<User>,
    sites: Vec<Site>,
    groups: Vec<(String, &'static str)>,
    /// Distinct actor ids (users, then apps); events store an index into it.
    pub actor_ids: Vec<String>,
    /// Distinct actor emails (parallel to `actor_ids`; empty when absent).
    pub actor_emails: Vec<String>,
    /// Distinct IP strings; events store an index into it.
    pub ips: Vec<String>,
    apps: Vec<(String, &'static str)>,
    spaces: Vec<(String, String)>,
    projects: Vec<String>,
    cumulative_weights: Vec<u32>,
}

#[derive(Debug)]
struct User {
    id: String,
    name: String,
    email: String,
    /// (location index, ip pool index)
    places: Vec<(usize, u32)>,
}

#[derive(Debug)]
struct Site {
    id: String,
    name: String,
    host: String,
}

/// A stored, serialized event plus the few fields the server filters and sorts on.
#[derive(Debug)]
pub struct EventRec {
    /// `attributes.processedAt` in epoch ms.
    pub processed_ms: i64,
    /// `attributes.time` in epoch ms.
    pub time_ms: i64,
    /// The event id.
    pub id: u128,
    /// The `/events-stream` JSON of the event.
    pub json: Box<[u8]>,
    /// Byte offset of the `"processedAt":"…",` segment (length [`PROCESSED_AT_SEGMENT_LEN`]).
    pub pa_off: u32,
    /// Index into [`ACTIONS`].
    pub action: u16,
    /// Product.
    pub product: Product,
    /// Index into [`OrgPools::actor_ids`] (`u32::MAX`: none).
    pub actor: u32,
    /// Index into [`OrgPools::ips`] (`u32::MAX`: no ip).
    pub ip: u32,
    /// Index into the location table (`u16::MAX`: none).
    pub loc: u16,
}

/// `"processedAt":"2025-06-02T08:15:43.090Z",`
pub const PROCESSED_AT_SEGMENT_LEN: usize = 15 + 24 + 2;

impl EventRec {
    /// The `/events` form: the stream JSON without `processedAt`, as two slices.
    pub fn query_form(&self) -> (&[u8], &[u8]) {
        let off = self.pa_off as usize;
        (
            &self.json[..off],
            &self.json[off + PROCESSED_AT_SEGMENT_LEN..],
        )
    }

    /// The event id as a string.
    pub fn id_string(&self) -> String {
        uuid_string(self.id)
    }
}

/// Location city / country for the `/events` `location` filter.
pub fn location(idx: u16) -> Option<(&'static str, &'static str)> {
    LOCATIONS.get(usize::from(idx)).map(|l| (l.0, l.2))
}

impl OrgPools {
    /// Builds the pools of one org from the seed.
    pub fn new(org_id: &str, org_index: usize, seed: u64) -> Self {
        let mut r = Rng::new(mix(seed, 0xA11CE + org_index as u64));
        let mut ips = Vec::new();
        let mut actor_ids = Vec::new();
        let mut actor_emails = Vec::new();
        let n_users = 250;
        let mut users = Vec::with_capacity(n_users);
        for i in 0..n_users {
            let first = *r.pick(FIRST);
            let last = *r.pick(LAST);
            let id = match r.below(3) {
                0 => format!("557058:{}", uuid_string(r.uuid())),
                1 => format!("712020:{}", uuid_string(r.uuid())),
                _ => hex(&mut r, 24),
            };
            let dom = *r.pick(DOMAINS);
            // Accented letters lose their accent (Zoë → zoe), as mail systems usually do.
            let local: String = format!("{first}.{last}{i}")
                .to_lowercase()
                .chars()
                .map(|c| match c {
                    'á' | 'à' | 'ä' | 'â' => 'a',
                    'é' | 'è' | 'ë' | 'ê' => 'e',
                    'í' | 'ì' | 'ï' | 'î' => 'i',
                    'ó' | 'ò' | 'ö' | 'ô' | 'ø' => 'o',
                    'ú' | 'ù' | 'ü' | 'û' => 'u',
                    other => other,
                })
                .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
                .collect();
            let email = format!("{local}@{dom}");
            let mut places = Vec::new();
            for _ in 0..(1 + r.below(3)) {
                let loc = r.below(LOCATIONS.len() as u64) as usize;
                let ip = if r.chance(0.25) {
                    format!(
                        "2001:db8:{:x}:{:x}::{:x}",
                        r.below(0xffff),
                        r.below(0xffff),
                        1 + r.below(0xfffe)
                    )
                } else {
                    let net = *r.pick(&["203.0.113", "198.51.100", "192.0.2"]);
                    format!("{net}.{}", 1 + r.below(254))
                };
                ips.push(ip);
                places.push((loc, (ips.len() - 1) as u32));
            }
            actor_ids.push(id.clone());
            actor_emails.push(email.clone());
            users.push(User {
                id,
                name: format!("{first} {last}"),
                email,
                places,
            });
        }
        let mut apps = Vec::new();
        for (i, name) in APPS.iter().enumerate() {
            let id = if i % 2 == 0 {
                uuid_string(r.uuid())
            } else {
                hex(&mut r, 24)
            };
            actor_ids.push(id.clone());
            actor_emails.push("Atlassian app".to_string());
            apps.push((id, *name));
        }
        for (id, _) in [
            ("confluence", "Confluence"),
            ("jira", "Jira"),
            ("bitbucket", "Bitbucket"),
            ("guard-detect", "Atlassian Guard"),
        ] {
            actor_ids.push(id.to_string());
            actor_emails.push("Atlassian app".to_string());
        }
        let sites = (0..3)
            .map(|i| {
                let name = format!("{}{}", ["acme", "example", "globex"][i], org_index);
                Site {
                    id: uuid_string(r.uuid()),
                    host: format!("{name}.atlassian.net"),
                    name,
                }
            })
            .collect();
        let groups = GROUPS.iter().map(|g| (uuid_string(r.uuid()), *g)).collect();
        let spaces = (0..20)
            .map(|i| (format!("{}", 100_000 + r.below(900_000)), format!("SP{i}")))
            .collect();
        let projects = ["OPS", "SEC", "WEB", "APP", "DATA", "HR", "ITSM"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut acc = 0;
        let cumulative_weights = ACTIONS
            .iter()
            .map(|a| {
                acc += a.weight;
                acc
            })
            .collect();
        Self {
            org_id: org_id.to_string(),
            org_name: format!("Example Org {}", org_index + 1),
            users,
            sites,
            groups,
            actor_ids,
            actor_emails,
            ips,
            apps,
            spaces,
            projects,
            cumulative_weights,
        }
    }

    fn pick_action(&self, r: &mut Rng) -> usize {
        let total = *self.cumulative_weights.last().unwrap_or(&1);
        let x = r.below(u64::from(total)) as u32;
        self.cumulative_weights.partition_point(|&c| c <= x)
    }
}

// ---------------------------------------------------------------- serialization structs

/// An ordered string map (insertion order is kept regardless of serde_json features).
#[derive(Default)]
struct Kv(Vec<(&'static str, Val)>);

enum Val {
    S(String),
    Changes(Vec<Change>),
}

#[derive(Serialize)]
struct Change {
    name: &'static str,
    #[serde(rename = "oldValue")]
    old_value: String,
    #[serde(rename = "newValue")]
    new_value: String,
}

impl Serialize for Kv {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            match v {
                Val::S(x) => m.serialize_entry(k, x)?,
                Val::Changes(x) => m.serialize_entry(k, x)?,
            }
        }
        m.end()
    }
}

impl Kv {
    fn s(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.0.push((k, Val::S(v.into())));
        self
    }
}

#[derive(Serialize, Default)]
struct Links {
    #[serde(rename = "self", skip_serializing_if = "Option::is_none")]
    self_: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alt: Option<String>,
}

#[derive(Serialize)]
struct Obj {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(rename = "type")]
    ty: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<Kv>,
    #[serde(skip_serializing_if = "Option::is_none")]
    links: Option<Links>,
}

#[derive(Serialize)]
struct Auth {
    #[serde(rename = "authType")]
    auth_type: &'static str,
    #[serde(rename = "tokenId", skip_serializing_if = "Option::is_none")]
    token_id: Option<String>,
    #[serde(rename = "tokenLabel", skip_serializing_if = "Option::is_none")]
    token_label: Option<String>,
}

#[derive(Serialize)]
struct OnBehalfOf {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
}

#[derive(Serialize)]
struct AppRef {
    id: String,
    #[serde(rename = "type")]
    ty: &'static str,
    attributes: Kv,
}

#[derive(Serialize)]
struct Actor {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    picture: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    links: Option<Links>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<Auth>,
    #[serde(rename = "onBehalfOf", skip_serializing_if = "Option::is_none")]
    on_behalf_of: Option<OnBehalfOf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app: Option<AppRef>,
}

#[derive(Serialize, Default)]
struct Location {
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    geo: Option<&'static str>,
    #[serde(rename = "countryName", skip_serializing_if = "Option::is_none")]
    country_name: Option<&'static str>,
    #[serde(rename = "regionName", skip_serializing_if = "Option::is_none")]
    region_name: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    city: Option<&'static str>,
}

#[derive(Serialize)]
struct Attributes {
    time: String,
    #[serde(rename = "processedAt")]
    processed_at: String,
    action: &'static str,
    actor: Actor,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<Vec<Obj>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<Vec<Obj>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<Location>,
}

#[derive(Serialize)]
struct Message {
    content: String,
    format: &'static str,
}

#[derive(Serialize)]
struct Event {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    ty: Option<&'static str>,
    id: String,
    attributes: Attributes,
    #[serde(skip_serializing_if = "Option::is_none")]
    links: Option<Links>,
    #[serde(skip_serializing_if = "Option::is_none")]
    relations: Option<Option<()>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Message>,
}

// ---------------------------------------------------------------- generation

/// Draws the processing lag (`processedAt - time`) in ms: mostly sub-second, sometimes minutes,
/// rarely hours (late events).
fn draw_lag(r: &mut Rng) -> i64 {
    let x = r.f64();
    if x < 0.70 {
        r.range(40, 1_500)
    } else if x < 0.95 {
        r.range(1_500, 60_000)
    } else if x < 0.99 {
        r.range(60_000, 30 * 60_000)
    } else {
        r.range(3_600_000, 48 * 3_600_000)
    }
}

/// Draws a target serialized size in bytes (0.5–4 KB, skewed small like real events).
fn draw_target_size(r: &mut Rng) -> usize {
    let x = r.f64();
    (if x < 0.75 {
        r.range(500, 1_100)
    } else if x < 0.95 {
        r.range(1_100, 2_500)
    } else {
        r.range(2_500, 3_900)
    }) as usize
}

fn user_obj(pools: &OrgPools, u: &User, with_id: bool) -> Obj {
    Obj {
        id: with_id.then(|| u.id.clone()),
        ty: "users",
        attributes: Some(
            Kv::default()
                .s("name", u.name.clone())
                .s("email", u.email.clone())
                .s("accountType", "atlassian"),
        ),
        links: Some(Links {
            self_: None,
            alt: Some(format!(
                "https://admin.atlassian.com/o/{}/users",
                pools.org_id
            )),
        }),
    }
}

fn site_obj(s: &Site, scheme: bool) -> Obj {
    Obj {
        id: Some(s.id.clone()),
        ty: "sites",
        attributes: Some(Kv::default().s("siteName", s.name.clone()).s(
            "siteHostName",
            if scheme {
                format!("https://{}", s.host)
            } else {
                s.host.clone()
            },
        )),
        links: Some(Links {
            self_: None,
            alt: Some(format!("https://{}", s.host)),
        }),
    }
}

fn org_obj(pools: &OrgPools) -> Obj {
    Obj {
        id: Some(pools.org_id.clone()),
        ty: "orgs",
        attributes: Some(Kv::default().s("name", pools.org_name.clone())),
        links: Some(Links {
            self_: None,
            alt: Some(format!(
                "https://admin.atlassian.com/o/{}/overview",
                pools.org_id
            )),
        }),
    }
}

/// Generates one event. `idx` is the event's global index within its org (history then live).
pub fn gen_event(
    pools: &OrgPools,
    seed: u64,
    org_index: usize,
    idx: u64,
    processed_ms: i64,
) -> EventRec {
    let mut r = Rng::new(mix(mix(seed, org_index as u64 + 1), idx));
    let id = r.uuid();
    let id_s = uuid_string(id);
    let ai = pools.pick_action(&mut r);
    let action = &ACTIONS[ai];
    let lag = draw_lag(&mut r);
    let mut time_ms = processed_ms - lag;
    let time = if r.chance(0.08) {
        time_ms -= time_ms.rem_euclid(1000);
        rfc3339_seconds(time_ms)
    } else {
        rfc3339_millis(time_ms)
    };
    let site = r.pick(&pools.sites);
    let scheme = r.chance(0.5);

    // Actor.
    let app_actor = r.chance(action.app_actor);
    let mut actor_idx;
    let mut user_place = None;
    let actor = if app_actor {
        if action.product != Product::None && r.chance(0.6) {
            let (id, name) = match action.product {
                Product::Jira => ("jira", "Jira"),
                Product::Confluence => ("confluence", "Confluence"),
                Product::Bitbucket => ("bitbucket", "Bitbucket"),
                _ => ("guard-detect", "Atlassian Guard"),
            };
            actor_idx = pools.actor_ids.iter().position(|a| a == id).unwrap_or(0) as u32;
            Actor {
                id: id.to_string(),
                name: Some(name.to_string()),
                email: Some("Atlassian app".to_string()),
                picture: Some(None),
                links: Some(Links::default()),
                auth: None,
                on_behalf_of: None,
                app: None,
            }
        } else {
            let ai2 = r.below(pools.apps.len() as u64) as usize;
            let (aid, aname) = &pools.apps[ai2];
            actor_idx = (pools.users.len() + ai2) as u32;
            Actor {
                id: aid.clone(),
                name: Some((*aname).to_string()),
                email: Some("Atlassian app".to_string()),
                picture: None,
                links: None,
                auth: r.chance(0.5).then_some(Auth {
                    auth_type: r.pick::<&str>(&[
                        "container-token",
                        "connect-token",
                        "auth-token-for-2LO",
                    ]),
                    token_id: None,
                    token_label: None,
                }),
                on_behalf_of: None,
                app: Some(AppRef {
                    id: aid.clone(),
                    ty: "apps",
                    attributes: Kv::default().s("name", *aname),
                }),
            }
        }
    } else {
        // A few admins do most of the admin work.
        let ui = if r.chance(0.5) {
            r.below(5)
        } else {
            r.below(pools.users.len() as u64)
        } as usize;
        actor_idx = ui as u32;
        let u = &pools.users[ui];
        user_place = Some(*r.pick(&u.places));
        let x = r.f64();
        let auth = if x < 0.72 {
            None
        } else if x < 0.82 {
            Some(Auth {
                auth_type: "session",
                token_id: None,
                token_label: None,
            })
        } else if x < 0.95 {
            Some(Auth {
                auth_type: "api-token",
                token_id: Some(uuid_string(r.uuid())),
                token_label: Some(format!(
                    "{}-{}",
                    r.pick(&["ci-bot", "backup", "scim-sync", "reporting", "terraform"]),
                    r.below(100)
                )),
            })
        } else {
            Some(Auth {
                auth_type: r.pick::<&str>(&[
                    "auth-token-for-3LO",
                    "connect-token",
                    "auth-token-for-2LO",
                ]),
                token_id: Some(uuid_string(r.uuid())),
                token_label: None,
            })
        };
        let obo = (auth.as_ref().is_some_and(|a| a.auth_type != "session") && r.chance(0.25)).then(
            || {
                let o = r.pick(&pools.users);
                OnBehalfOf {
                    id: o.id.clone(),
                    name: r.chance(0.5).then(|| o.name.clone()),
                    email: Some(o.email.clone()),
                }
            },
        );
        let anonymous = r.chance(0.02); // name/email absent
        Actor {
            id: u.id.clone(),
            name: (!anonymous).then(|| u.name.clone()),
            email: (!anonymous).then(|| u.email.clone()),
            picture: r.chance(0.1).then_some(None),
            links: r.chance(0.3).then(|| Links {
                self_: Some(format!(
                    "https://api.atlassian.com/users/{}/manage/profile",
                    u.id
                )),
                alt: None,
            }),
            auth,
            on_behalf_of: obo,
            app: None,
        }
    };
    if actor_idx as usize >= pools.actor_ids.len() {
        actor_idx = u32::MAX;
    }

    // Context (the "what").
    let target = r.pick(&pools.users);
    let group = r.pick(&pools.groups);
    let mut target_name = String::new();
    let mut ctx: Vec<Obj> = Vec::new();
    let no_id = r.chance(0.03);
    match action.ctx {
        Ctx::Empty => {}
        Ctx::User => {
            target_name = target.name.clone();
            ctx.push(user_obj(pools, target, !no_id));
        }
        Ctx::Group | Ctx::UserAndGroup | Ctx::GroupAndProduct | Ctx::SpaceAndGroup => {
            if matches!(action.ctx, Ctx::UserAndGroup) {
                ctx.push(user_obj(pools, target, true));
            }
            if matches!(action.ctx, Ctx::SpaceAndGroup) {
                let (sid, key) = r.pick(&pools.spaces);
                ctx.push(Obj {
                    id: Some(sid.clone()),
                    ty: "space",
                    attributes: Some(
                        Kv::default()
                            .s("name", format!("Space {key}"))
                            .s("key", key.clone()),
                    ),
                    links: None,
                });
            }
            target_name = group.1.to_string();
            ctx.push(Obj {
                id: (!no_id).then(|| group.0.clone()),
                ty: "groups",
                attributes: Some(Kv::default().s("groupName", group.1)),
                links: Some(Links {
                    self_: None,
                    alt: Some(format!(
                        "https://admin.atlassian.com/o/{}/groups/{}",
                        pools.org_id, group.0
                    )),
                }),
            });
            if matches!(action.ctx, Ctx::GroupAndProduct) {
                let (p, pn) = r.pick(PRODUCTS);
                ctx.push(Obj {
                    id: Some(format!("{p}/{}", site.id)),
                    ty: "products",
                    attributes: Some(Kv::default().s("product", *pn).s("role", *r.pick(ROLES))),
                    links: None,
                });
            }
        }
        Ctx::UserAndProduct => {
            target_name = target.name.clone();
            ctx.push(user_obj(pools, target, !no_id));
            let (p, pn) = r.pick(PRODUCTS);
            ctx.push(Obj {
                id: Some(format!("{p}/{}", site.id)),
                ty: "products",
                attributes: Some(Kv::default().s("product", *pn).s("role", *r.pick(ROLES))),
                links: None,
            });
        }
        Ctx::Token => {
            target_name = format!("token-{}", r.below(1000));
            ctx.push(Obj {
                id: (!no_id).then(|| uuid_string(r.uuid())),
                ty: "api-tokens",
                attributes: Some(Kv::default().s("name", target_name.clone()).s(
                    "expiresAt",
                    rfc3339_seconds(processed_ms + 365 * 86_400_000),
                )),
                links: None,
            });
        }
        Ctx::App => {
            let (aid, aname) = r.pick(&pools.apps);
            target_name = (*aname).to_string();
            ctx.push(Obj {
                id: Some(aid.clone()),
                ty: "apps",
                attributes: Some(
                    Kv::default()
                        .s("name", *aname)
                        .s("vendor", "Example Vendor"),
                ),
                links: None,
            });
        }
        Ctx::Policy => {
            target_name = format!(
                "{} policy",
                r.pick(&["Default", "Contractors", "Admins", "Engineering"])
            );
            ctx.push(Obj {
                id: (!no_id).then(|| uuid_string(r.uuid())),
                ty: "policies",
                attributes: Some(Kv::default().s("name", target_name.clone())),
                links: None,
            });
        }
        Ctx::Space => {
            let (sid, key) = r.pick(&pools.spaces);
            target_name = format!("Space {key}");
            ctx.push(Obj {
                id: Some(sid.clone()),
                ty: "space",
                attributes: Some(
                    Kv::default()
                        .s("name", target_name.clone())
                        .s("key", key.clone()),
                ),
                links: Some(Links {
                    self_: None,
                    alt: Some(format!("https://{}/wiki/spaces/{key}", site.host)),
                }),
            });
        }
        Ctx::Issue => {
            let key = format!("{}-{}", r.pick(&pools.projects), 1 + r.below(5000));
            target_name = key.clone();
            ctx.push(Obj {
                id: Some(format!("{}", 10_000 + r.below(900_000))),
                ty: "issues",
                attributes: Some(
                    Kv::default()
                        .s("issueKeyOrId", key.clone())
                        .s("issueId", format!("{}", 10_000 + r.below(900_000))),
                ),
                links: Some(Links {
                    self_: None,
                    alt: Some(format!("https://{}/browse/{key}", site.host)),
                }),
            });
        }
        Ctx::Page => {
            let pid = 1_000_000 + r.below(9_000_000);
            target_name = format!("Page {pid}");
            ctx.push(Obj {
                id: Some(pid.to_string()),
                ty: "pages",
                attributes: Some(
                    Kv::default()
                        .s("title", format!("Runbook {}", r.below(500)))
                        .s("spaceKey", r.pick(&pools.spaces).1.clone()),
                ),
                links: Some(Links {
                    self_: None,
                    alt: Some(format!("https://{}/wiki/pages/{pid}", site.host)),
                }),
            });
        }
        Ctx::InvitedUser => {
            let email = format!("new.hire{}@{}", r.below(10_000), r.pick(DOMAINS));
            target_name = email.clone();
            ctx.push(Obj {
                id: None,
                ty: "invited-user",
                attributes: Some(Kv::default().s("email", email)),
                links: None,
            });
        }
        Ctx::Site => {
            target_name = site.name.clone();
            ctx.push(site_obj(site, scheme));
        }
        Ctx::Domain => {
            target_name = r.pick(DOMAINS).to_string();
            ctx.push(Obj {
                id: None,
                ty: "domains",
                attributes: Some(Kv::default().s("name", target_name.clone())),
                links: None,
            });
        }
        Ctx::Repository => {
            target_name = format!(
                "{}/{}",
                site.name,
                r.pick(&["api", "web", "infra", "mobile", "docs"])
            );
            ctx.push(Obj {
                id: Some(format!("{{{}}}", uuid_string(r.uuid()))),
                ty: "repositories",
                attributes: Some(Kv::default().s("name", target_name.clone())),
                links: None,
            });
        }
        Ctx::Video => {
            target_name = format!("Demo recording {}", r.below(1000));
            ctx.push(Obj {
                id: Some(hex(&mut r, 32)),
                ty: "videos",
                attributes: Some(Kv::default().s("name", target_name.clone())),
                links: None,
            });
        }
        Ctx::Alert => {
            target_name = format!(
                "Detection {}",
                r.pick(&[
                    "Bulk export",
                    "Public link",
                    "Unusual login",
                    "Admin escalation"
                ])
            );
            ctx.push(Obj {
                id: Some(uuid_string(r.uuid())),
                ty: "alerts",
                attributes: Some(
                    Kv::default()
                        .s("name", target_name.clone())
                        .s("severity", *r.pick(&["low", "medium", "high"])),
                ),
                links: None,
            });
        }
        Ctx::Agent => {
            target_name = format!("Agent {}", r.below(100));
            ctx.push(Obj {
                id: Some(uuid_string(r.uuid())),
                ty: "agents",
                attributes: Some(Kv::default().s("name", target_name.clone())),
                links: None,
            });
        }
    }

    // Container (the "where").
    let mut cont: Vec<Obj> = Vec::new();
    match action.cont {
        Cont::None => {}
        Cont::Org => cont.push(org_obj(pools)),
        Cont::Site => cont.push(site_obj(site, scheme)),
        Cont::SiteAndOrg => {
            cont.push(site_obj(site, scheme));
            cont.push(org_obj(pools));
        }
    }
    if app_actor && action.product == Product::Confluence && r.chance(0.5) {
        cont.clear();
    }

    // Location.
    let mut ip_idx = u32::MAX;
    let mut loc_idx = u16::MAX;
    let location = match user_place {
        Some((li, ipi)) if !r.chance(0.04) => {
            let l = LOCATIONS[li];
            let x = r.f64();
            if x < 0.03 {
                // partial, as for some system events
                Some(Location {
                    geo: Some(l.3),
                    ..Location::default()
                })
            } else if x < 0.05 {
                // empty strings
                Some(Location {
                    ip: Some(String::new()),
                    geo: Some(l.3),
                    country_name: Some(""),
                    ..Location::default()
                })
            } else {
                ip_idx = ipi;
                loc_idx = li as u16;
                Some(Location {
                    ip: Some(pools.ips[ipi as usize].clone()),
                    geo: r.chance(0.2).then_some(l.3),
                    country_name: Some(l.2),
                    region_name: r.chance(0.8).then_some(l.1),
                    city: Some(l.0),
                })
            }
        }
        Some(_) => None,
        None => r.chance(0.5).then(|| Location {
            geo: Some(*r.pick(&["EU", "NA", "AS"])),
            ip: r.chance(0.5).then(String::new),
            ..Location::default()
        }),
    };

    // Context presence variation: [] vs missing for org-level events; rare [] elsewhere.
    let context = if ctx.is_empty() {
        if r.chance(0.5) { Some(ctx) } else { None }
    } else if r.chance(0.01) {
        None
    } else {
        Some(ctx)
    };
    let container = if cont.is_empty() {
        r.chance(0.3).then_some(cont)
    } else {
        Some(cont)
    };

    let message = r.chance(0.9).then(|| Message {
        content: if target_name.is_empty() {
            action.display.to_string()
        } else {
            format!("{}: {}", action.display, target_name)
        },
        format: if r.chance(0.7) {
            "simple"
        } else {
            "text/plain"
        },
    });

    let mut ev = Event {
        ty: (!r.chance(0.01)).then_some("events"),
        attributes: Attributes {
            time,
            processed_at: rfc3339_millis(processed_ms),
            action: action.id,
            actor,
            context,
            container,
            location,
        },
        links: (!r.chance(0.05)).then(|| Links {
            self_: Some(format!(
                "https://api.atlassian.com/admin/v1/orgs/{}/events/{}",
                pools.org_id, id_s
            )),
            alt: None,
        }),
        relations: r.chance(0.5).then_some(None),
        message,
        id: id_s,
    };

    let target = draw_target_size(&mut r);
    let mut json = serialize(&ev);
    if json.len() < target {
        pad(
            &mut ev,
            pools,
            action,
            &mut r,
            target - json.len(),
            processed_ms,
        );
        json = serialize(&ev);
    }
    let pa_off = find(&json, b"\"processedAt\":\"").unwrap_or(0) as u32;
    EventRec {
        processed_ms,
        time_ms,
        id,
        json: json.into_boxed_slice(),
        pa_off,
        action: ai as u16,
        product: action.product,
        actor: actor_idx,
        ip: ip_idx,
        loc: loc_idx,
    }
}

fn serialize(ev: &Event) -> Vec<u8> {
    // Serializing plain structs of strings cannot fail.
    serde_json::to_vec(ev).unwrap_or_default()
}

/// Adds realistic bulk (a settings change list) until the event grows by about `deficit` bytes.
/// Grows an event towards its target size the way real events are large: bulk operations list
/// more users in `context`; settings, policy and object changes carry a `changes` list. Sign-in
/// and other org-level events without a context stay small, as they are.
fn pad(
    ev: &mut Event,
    pools: &OrgPools,
    action: &ActionDef,
    r: &mut Rng,
    deficit: usize,
    now_ms: i64,
) {
    let settings_like = action.id.contains("settings") || action.id.contains("policy");
    match action.ctx {
        Ctx::Empty if !settings_like => return,
        Ctx::User
        | Ctx::UserAndGroup
        | Ctx::UserAndProduct
        | Ctx::Group
        | Ctx::GroupAndProduct
        | Ctx::InvitedUser => {
            // A bulk operation: more affected users.
            let ctx = ev.attributes.context.get_or_insert_with(Vec::new);
            let mut added = 0;
            while added < deficit {
                let u = r.pick(&pools.users);
                added += 190 + u.id.len() + u.name.len() + u.email.len() + pools.org_id.len();
                ctx.push(user_obj(pools, u, true));
            }
            return;
        }
        _ => {}
    }
    let mut changes = Vec::new();
    let mut added = 12;
    while added < deficit {
        let name = *r.pick(SETTINGS);
        let old_value = format!("{}", r.below(100_000));
        let new_value = if r.chance(0.3) {
            rfc3339_millis(now_ms - r.range(0, 86_400_000))
        } else {
            format!("{}", r.below(100_000))
        };
        added += 40 + name.len() + old_value.len() + new_value.len();
        changes.push(Change {
            name,
            old_value,
            new_value,
        });
    }
    let slot = ev
        .attributes
        .context
        .as_mut()
        .and_then(|c| c.first_mut())
        .or_else(|| ev.attributes.container.as_mut().and_then(|c| c.first_mut()));
    match slot {
        Some(obj) => {
            obj.attributes
                .get_or_insert_with(Kv::default)
                .0
                .push(("changes", Val::Changes(changes)));
        }
        None => {
            let ctx = ev.attributes.context.get_or_insert_with(Vec::new);
            ctx.push(Obj {
                id: None,
                ty: "settings",
                attributes: Some(Kv(vec![("changes", Val::Changes(changes))])),
                links: None,
            });
        }
    }
}

/// First occurrence of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Case-insensitive (ASCII) containment.
pub fn contains_ignore_ascii_case(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    let first = needle[0].to_ascii_lowercase();
    hay.windows(needle.len())
        .any(|w| w[0].to_ascii_lowercase() == first && w.eq_ignore_ascii_case(needle))
}

/// The `processedAt` times of the history, ascending, ending at or before `end_ms`.
///
/// Same-millisecond ties occur at random (about 3 %) and are forced at every index that is a
/// multiple of 100, so a tie straddles every page boundary for `limit` 100, 200 and 500.
pub fn history_times(seed: u64, org_index: usize, n: usize, span_ms: i64, end_ms: i64) -> Vec<i64> {
    let mut r = Rng::new(mix(seed, 0x7133 + org_index as u64));
    let mean_gap = (span_ms as f64 / n.max(1) as f64).max(1.0);
    let mut out = Vec::with_capacity(n);
    let mut t: i64 = 0;
    for i in 0..n {
        if i > 0 {
            let tie = i % 100 == 0 || r.chance(0.03);
            if !tie {
                // exponential gap, at least 1 ms
                let u = r.f64().max(1e-12);
                t += ((-u.ln()) * mean_gap).round().max(1.0) as i64;
            }
        }
        out.push(t);
    }
    let last = out.last().copied().unwrap_or(0);
    let shift = end_ms - 1_000 - last;
    for x in &mut out {
        *x += shift;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools() -> OrgPools {
        OrgPools::new("11111111-2222-3333-4444-555555555555", 0, 7)
    }

    #[test]
    fn catalogue_has_at_least_30_unique_actions() {
        assert!(ACTIONS.len() >= 30);
        let mut ids: Vec<_> = ACTIONS.iter().map(|a| a.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), ACTIONS.len());
    }

    #[test]
    fn events_are_valid_json_with_processed_at_segment() {
        let p = pools();
        let times = history_times(7, 0, 2000, 86_400_000, 1_750_000_000_000);
        for (i, t) in times.iter().enumerate() {
            let e = gen_event(&p, 7, 0, i as u64, *t);
            let v: serde_json::Value = serde_json::from_slice(&e.json).unwrap();
            assert_eq!(v["id"].as_str().unwrap(), e.id_string());
            let seg = &e.json[e.pa_off as usize..e.pa_off as usize + PROCESSED_AT_SEGMENT_LEN];
            assert!(
                seg.starts_with(b"\"processedAt\":\""),
                "{}",
                String::from_utf8_lossy(seg)
            );
            assert!(seg.ends_with(b"\","));
            let (a, b) = e.query_form();
            let mut q = a.to_vec();
            q.extend_from_slice(b);
            let qv: serde_json::Value = serde_json::from_slice(&q).unwrap();
            assert!(qv["attributes"].get("processedAt").is_none());
            assert_eq!(qv["attributes"]["time"], v["attributes"]["time"]);
            let pa: jiff::Timestamp = v["attributes"]["processedAt"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let tm: jiff::Timestamp = v["attributes"]["time"].as_str().unwrap().parse().unwrap();
            assert_eq!(pa.as_millisecond(), *t);
            assert_eq!(tm.as_millisecond(), e.time_ms);
            assert!(tm < pa);
            assert!(e.json.len() <= 4096, "{}", e.json.len());
        }
    }

    #[test]
    fn emails_keep_every_letter_of_accented_names() {
        let p = pools();
        for u in &p.users {
            let (first, _) = u.name.split_once(' ').unwrap();
            let local = u.email.split('@').next().unwrap();
            assert!(u.email.is_ascii(), "{}", u.email);
            // Zoë → zoe, Björn → bjorn, Lucía → lucia: as many letters as the name.
            let prefix = local.split('.').next().unwrap();
            assert_eq!(
                prefix.len(),
                first.chars().count(),
                "{} <{}>",
                u.name,
                u.email
            );
        }
    }

    #[test]
    fn deterministic_for_a_seed() {
        let p = pools();
        let a = gen_event(&p, 7, 0, 42, 1_750_000_000_000);
        let b = gen_event(&pools(), 7, 0, 42, 1_750_000_000_000);
        assert_eq!(a.json, b.json);
        let c = gen_event(&p, 8, 0, 42, 1_750_000_000_000);
        assert_ne!(a.json, c.json);
    }

    #[test]
    fn history_has_forced_ties_at_hundreds() {
        let t = history_times(1, 0, 1000, 3_600_000, 1_750_000_000_000);
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
        for k in 1..10 {
            assert_eq!(t[k * 100 - 1], t[k * 100]);
        }
        assert!(*t.last().unwrap() <= 1_750_000_000_000);
    }

    #[test]
    fn variations_all_occur() {
        let p = pools();
        let n = 5000;
        let times = history_times(3, 0, n, 86_400_000, 1_750_000_000_000);
        let mut seen = std::collections::BTreeSet::new();
        let mut sizes = Vec::new();
        for (i, t) in times.iter().enumerate() {
            let e = gen_event(&p, 3, 0, i as u64, *t);
            sizes.push(e.json.len());
            let v: serde_json::Value = serde_json::from_slice(&e.json).unwrap();
            let a = &v["attributes"];
            let time = a["time"].as_str().unwrap();
            if !time.contains('.') {
                seen.insert("time-no-ms");
            }
            if v.get("links").is_none() {
                seen.insert("no-links");
            }
            if v.get("type").is_none() {
                seen.insert("no-type");
            }
            if v.get("relations").is_some_and(|r| r.is_null()) {
                seen.insert("relations-null");
            }
            match a.get("context") {
                None => {
                    seen.insert("context-missing");
                }
                Some(c) if c.as_array().unwrap().is_empty() => {
                    seen.insert("context-empty");
                }
                Some(c) => {
                    if c.as_array().unwrap().iter().any(|o| o.get("id").is_none()) {
                        seen.insert("context-no-id");
                    }
                }
            }
            match a.get("location") {
                None => {
                    seen.insert("location-missing");
                }
                Some(l) => {
                    if l.get("ip").is_none() {
                        seen.insert("location-partial");
                    }
                    if l.get("ip").and_then(|i| i.as_str()) == Some("") {
                        seen.insert("location-empty-ip");
                    }
                    if l.get("ip")
                        .and_then(|i| i.as_str())
                        .is_some_and(|i| i.contains(':'))
                    {
                        seen.insert("ipv6");
                    }
                    if l.get("ip")
                        .and_then(|i| i.as_str())
                        .is_some_and(|i| i.contains('.'))
                    {
                        seen.insert("ipv4");
                    }
                }
            }
            let actor = &a["actor"];
            if actor["email"].as_str() == Some("Atlassian app") {
                seen.insert("app-actor");
            }
            if actor.get("email").is_none() {
                seen.insert("actor-no-email");
            }
            if actor.pointer("/auth/authType").and_then(|x| x.as_str()) == Some("api-token") {
                seen.insert("api-token");
            }
            if actor.get("onBehalfOf").is_some() {
                seen.insert("on-behalf-of");
            }
            if (e.processed_ms - e.time_ms) > 3_600_000 {
                seen.insert("late");
            }
        }
        for k in [
            "time-no-ms",
            "no-links",
            "no-type",
            "relations-null",
            "context-missing",
            "context-empty",
            "context-no-id",
            "location-missing",
            "location-partial",
            "location-empty-ip",
            "ipv6",
            "ipv4",
            "app-actor",
            "actor-no-email",
            "api-token",
            "on-behalf-of",
            "late",
        ] {
            assert!(seen.contains(k), "variation {k} never generated");
        }
        let min = *sizes.iter().min().unwrap();
        let max = *sizes.iter().max().unwrap();
        let mean = sizes.iter().sum::<usize>() / sizes.len();
        assert!(min >= 400, "min {min}");
        assert!(max <= 4096, "max {max}");
        assert!((700..1800).contains(&mean), "mean {mean}");
    }
}

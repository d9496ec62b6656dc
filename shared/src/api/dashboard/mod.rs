//! `GET /dashboard`: one page (HTML, a script and a style sheet, all
//! compiled into the binary) that shows the caller's tenant what the API
//! knows: queue depth by model over time, jobs with their progress, requests
//! per hour, savings per day with a running total, failures by reason, spend
//! against budget and the current stats.
//!
//! The page carries no data, so it is answered without an identity: a
//! browser must load it before it can ask for a key. Every figure it shows
//! comes from the data routes (`/v1/stats`, `/v1/jobs`, `/v1/activity`,
//! `/v1/savings`), which it calls with the same authentication as any
//! client (a bearer key or token it asks for and keeps in the tab's
//! `sessionStorage`, or none when `batchq serve` runs without keys).
//!
//! Its files are answered with a Content-Security-Policy that allows only
//! the page's own origin: no inline script or style, no other host.

use super::{ApiError, ApiResponse, Method};

/// One file of the page, as compiled into the binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asset {
    /// Its route.
    pub path: &'static str,
    pub content_type: &'static str,
    pub text: &'static str,
}

/// The page itself. It names its script and style sheet relative to its own
/// URL (`dashboard/app.js`), so it also works under an API Gateway stage
/// prefix (`/prod/dashboard`).
pub const PAGE: Asset = Asset {
    path: "/dashboard",
    content_type: "text/html; charset=utf-8",
    text: include_str!("index.html"),
};

pub const SCRIPT: Asset = Asset {
    path: "/dashboard/app.js",
    content_type: "text/javascript; charset=utf-8",
    text: include_str!("app.js"),
};

pub const STYLE: Asset = Asset {
    path: "/dashboard/app.css",
    content_type: "text/css; charset=utf-8",
    text: include_str!("app.css"),
};

pub const ASSETS: [Asset; 3] = [PAGE, SCRIPT, STYLE];

/// Only the page's own origin: no inline code, no other host, no framing.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'";

/// The dashboard's routes, which need no identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DashboardRoute {
    Asset(Asset),
    /// `/dashboard/`: sent on to `/dashboard` (the page's relative links
    /// resolve against the path without the slash).
    TrailingSlash,
}

impl DashboardRoute {
    /// The dashboard route a raw path names, if any.
    pub fn parse(raw_path: &str) -> Option<Self> {
        if raw_path == "/dashboard/" {
            return Some(Self::TrailingSlash);
        }
        ASSETS.iter().find(|a| a.path == raw_path).copied().map(Self::Asset)
    }

    /// The route template, for logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Asset(a) => a.path,
            Self::TrailingSlash => "/dashboard/",
        }
    }

    /// The answer to `method` on this route: GET and HEAD only.
    pub fn answer(&self, method: &Method) -> ApiResponse {
        if !matches!(method, Method::Get | Method::Head) {
            return ApiResponse::from(ApiError::MethodNotAllowed {
                method: method.to_string(),
                allowed: &["GET", "HEAD"],
            });
        }
        match self {
            Self::Asset(a) => ApiResponse::asset(*a),
            // Relative, so a stage prefix is kept.
            Self::TrailingSlash => ApiResponse::json(308, serde_json::json!({"location": "../dashboard"}))
                .with_header("Location", "../dashboard"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_its_own_script_and_style_sheet() {
        let page = PAGE.text;
        assert!(
            page.contains(r#"src="dashboard/app.js""#),
            "the page loads its script relative to itself"
        );
        assert!(
            page.contains(r#"href="dashboard/app.css""#),
            "the page loads its style sheet relative to itself"
        );
        for a in ASSETS {
            // The SVG namespace is a name, not a place the page loads from.
            let text = a.text.replace("http://www.w3.org/2000/svg", "");
            for outside in [
                "http://", "https://", "//cdn", "<style", "style=\"", "onclick", "onload=",
            ] {
                assert!(!text.contains(outside), "{} contains {outside:?}", a.path);
            }
        }
        assert!(!page.contains("<script>"), "no inline script (the CSP would block it)");
    }

    #[test]
    fn the_dashboard_answers_its_files_with_their_types_and_a_self_only_policy() {
        for a in ASSETS {
            let resp = DashboardRoute::parse(a.path).unwrap().answer(&Method::Get);
            assert_eq!(resp.status, 200);
            assert_eq!(resp.content_type(), a.content_type);
            assert_eq!(resp.body_string(), a.text);
            assert_eq!(resp.header("content-security-policy"), Some(CONTENT_SECURITY_POLICY));
            assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
            assert_eq!(resp.header("cache-control"), Some("no-cache"));
        }
    }

    #[test]
    fn only_get_and_head_reach_the_dashboard() {
        let route = DashboardRoute::parse("/dashboard").unwrap();
        assert_eq!(route.answer(&Method::Head).status, 200);
        let post = route.answer(&Method::Post);
        assert_eq!(post.status, 405);
        assert_eq!(post.header("allow"), Some("GET, HEAD"));
        assert_eq!(post.content_type(), ApiResponse::CONTENT_TYPE);
    }

    #[test]
    fn other_paths_are_not_the_dashboards() {
        for path in ["/dashboard/x.js", "/dashboardx", "/v1/stats", "/", "/dashboard/app.js/"] {
            assert_eq!(DashboardRoute::parse(path), None, "{path}");
        }
        let slash = DashboardRoute::parse("/dashboard/").unwrap().answer(&Method::Get);
        assert_eq!((slash.status, slash.header("location")), (308, Some("../dashboard")));
    }
}

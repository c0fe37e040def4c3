//! Reading lists: JSON bodies, one page with its `Link: rel="next"` target, or every page.

use super::*;

/// The `rel="next"` target of one or more `Link` headers.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(LINK) {
        let Ok(value) = value.to_str() else { continue };
        for part in value.split(',') {
            let mut pieces = part.split(';');
            let Some(target) = pieces.next() else {
                continue;
            };
            let target = target.trim();
            let is_next = pieces.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            if is_next && target.starts_with('<') && target.ends_with('>') {
                return Some(target[1..target.len() - 1].to_owned());
            }
        }
    }
    None
}

impl OktaClient {
    /// GET and deserialize a JSON body ([`DEFAULT_CLASS`]).
    pub async fn get_json<T: DeserializeOwned>(&self, path_or_url: &str) -> Result<T, OktaError> {
        self.get_json_with(DEFAULT_CLASS, path_or_url).await
    }

    /// GET and deserialize a JSON body, as a request of `class`.
    pub async fn get_json_with<T: DeserializeOwned>(
        &self,
        class: Class,
        path_or_url: &str,
    ) -> Result<T, OktaError> {
        let (_, body) = self
            .request_with(class, Method::GET, path_or_url, None)
            .await?;
        parse_body(path_or_url, &body)
    }

    /// GET one page of a list ([`DEFAULT_CLASS`]); see [`OktaClient::get_page_with`].
    pub async fn get_page(&self, path_or_url: &str) -> Result<Page<Value>, OktaError> {
        self.get_page_with(DEFAULT_CLASS, path_or_url).await
    }

    /// GET one page of a list, with its `next` link, as a request of `class`. Items are
    /// returned as raw JSON so that the caller can skip a single malformed object instead of
    /// losing the page.
    pub async fn get_page_with(
        &self,
        class: Class,
        path_or_url: &str,
    ) -> Result<Page<Value>, OktaError> {
        let (headers, body) = self
            .request_with(class, Method::GET, path_or_url, None)
            .await?;
        let items: Vec<Value> = parse_body(path_or_url, &body)?;
        Ok(Page {
            items,
            next: next_link(&headers),
        })
    }

    /// Every page of a list (for small lists such as the org's apps), as requests of `class`.
    pub async fn get_all_with<T: DeserializeOwned>(
        &self,
        class: Class,
        first: &str,
    ) -> Result<Vec<T>, OktaError> {
        let mut out = Vec::new();
        let mut url = first.to_owned();
        let mut seen = std::collections::HashSet::new();
        loop {
            let page = self.get_page_with(class, &url).await?;
            for item in page.items {
                match serde_json::from_value::<T>(item) {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        tracing::warn!(error = %e, url = %strip_query(&url), "skipping a malformed object in an Okta list")
                    }
                }
            }
            match page.next {
                Some(n) if seen.insert(n.clone()) && n != url => url = n,
                _ => return Ok(out),
            }
        }
    }

    /// Every page of a list ([`DEFAULT_CLASS`]).
    pub async fn get_all<T: DeserializeOwned>(&self, first: &str) -> Result<Vec<T>, OktaError> {
        self.get_all_with(DEFAULT_CLASS, first).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_link_headers() {
        let mut h = HeaderMap::new();
        h.append(
            LINK,
            HeaderValue::from_static("<https://x.okta.com/api/v1/logs?limit=5>; rel=\"self\""),
        );
        h.append(
            LINK,
            HeaderValue::from_static(
                "<https://x.okta.com/api/v1/logs?after=1_2&limit=5>; rel=\"next\"",
            ),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://x.okta.com/api/v1/logs?after=1_2&limit=5")
        );
        let mut h = HeaderMap::new();
        h.append(
            LINK,
            HeaderValue::from_static("<https://a/1>; rel=\"self\", <https://a/2>; rel=\"next\""),
        );
        assert_eq!(next_link(&h).as_deref(), Some("https://a/2"));
        assert_eq!(next_link(&HeaderMap::new()), None);
    }
}

/// Property tests (issue 10): the `Link` header parser.
#[cfg(test)]
mod link_props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary header values never panic the parser, and what it returns was between
        /// `<` and `>` in one of them.
        #[test]
        fn never_panics(values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..4)) {
            let mut h = HeaderMap::new();
            for v in &values {
                if let Ok(v) = HeaderValue::from_bytes(v) {
                    h.append(LINK, v);
                }
            }
            if let Some(next) = next_link(&h) {
                let wrapped = format!("<{}>", next);
                prop_assert!(values.iter().any(|v| String::from_utf8_lossy(v).contains(&wrapped)));
            }
        }

        /// The `next` target is found whatever the order of the links, the spacing around `;`,
        /// the quoting of `rel`, and whether the links share one header or come in several.
        #[test]
        fn finds_next_among_others(
            next in "https://acme\\.okta\\.com/api/v1/logs\\?after=[0-9]{1,13}_[0-9]{1,6}&limit=1000",
            others in prop::collection::vec(("https://acme\\.okta\\.com/[a-z]{0,10}", prop::sample::select(vec!["self", "prev", "first"])), 0..3),
            pos in 0usize..4,
            quoted in any::<bool>(),
            spaced in any::<bool>(),
            one_header in any::<bool>(),
        ) {
            let sep = if spaced { " ; " } else { ";" };
            let rel = |r: &str| if quoted { format!("rel=\"{r}\"") } else { format!("rel={r}") };
            let mut links: Vec<String> = others.iter().map(|(u, r)| format!("<{u}>{sep}{}", rel(r))).collect();
            links.insert(pos.min(links.len()), format!("<{next}>{sep}{}", rel("next")));
            let mut h = HeaderMap::new();
            if one_header {
                h.append(LINK, HeaderValue::from_str(&links.join(", ")).unwrap());
            } else {
                for l in &links {
                    h.append(LINK, HeaderValue::from_str(l).unwrap());
                }
            }
            prop_assert_eq!(next_link(&h), Some(next));
        }
    }
}

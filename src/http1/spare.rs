//! Spare header maps, kept per thread: the map a request or an answer
//! needs is taken from here and given back once its head is written, as
//! hyper keeps the last head's map for the next. A header map costs two
//! allocations to make and two to drop, about as much as filling it.
//!
//! Only the HTTP/1 paths give maps back (the request's once its upstream head
//! is written, the answer's once its head is sent); any other map is
//! dropped as usual. Taking from an empty spare list makes a new map.

use std::cell::RefCell;

use http::HeaderMap;

/// Spare maps kept per thread: about the requests one thread has in flight
/// between taking and giving back.
const KEPT: usize = 64;
/// A map that grew past this many headers is dropped, not kept: one odd
/// request does not pin a large map.
const LARGEST: usize = 32;

thread_local! {
    static SPARE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// An empty map with room for about `capacity` headers.
pub fn take(capacity: usize) -> HeaderMap {
    SPARE
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_else(|| HeaderMap::with_capacity(capacity))
}

/// Keeps `map`'s allocations for a later [`take`].
pub fn give(mut map: HeaderMap) {
    if map.capacity() > LARGEST {
        return;
    }
    map.clear();
    SPARE.with(|s| {
        let mut spare = s.borrow_mut();
        if spare.len() < KEPT {
            spare.push(map);
        }
    });
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn a_map_given_back_comes_back_empty_with_its_room() {
        let mut map = take(8);
        for i in 0..8 {
            map.append(
                http::HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        let room = map.capacity();
        give(map);
        let again = take(1);
        assert!(again.is_empty(), "{again:?}");
        assert_eq!(again.capacity(), room, "the same map, not a new one");
    }

    #[test]
    fn large_maps_are_not_kept() {
        let map = HeaderMap::with_capacity(LARGEST * 2);
        give(map);
        let next = take(1);
        assert!(next.capacity() <= LARGEST, "{}", next.capacity());
    }
}

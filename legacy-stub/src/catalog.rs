//! The Tea & Co. shop's fixed data — customers, products and orders — and
//! its JSON rendering, shared by the monolith and both extracted services so
//! that they answer with the same shapes and values. The only thing a caller
//! chooses is the [`TimeStyle`] of `created_at`: that is the one deliberate
//! difference between the monolith and the orders service.
//!
//! Money is kept in integer cents and rendered as `"12.50"` strings.

use serde_json::{Map, Value, json};

use crate::clock;

/// A shop customer.
pub(crate) struct Customer {
    pub(crate) id: u64,
    pub(crate) name: &'static str,
    pub(crate) email: &'static str,
    pub(crate) city: &'static str,
    pub(crate) member_since: &'static str,
}

/// A product (stock-keeping unit).
pub(crate) struct Product {
    pub(crate) sku: &'static str,
    pub(crate) name: &'static str,
    pub(crate) price_cents: u64,
    pub(crate) available: u64,
}

/// One line of an order: `qty` units of `sku` at `price_cents` each.
pub(crate) struct Line {
    pub(crate) sku: &'static str,
    pub(crate) qty: u64,
    pub(crate) price_cents: u64,
}

/// A historical order; `created_at` is Unix seconds.
pub(crate) struct Order {
    pub(crate) id: u64,
    pub(crate) customer_id: u64,
    pub(crate) status: &'static str,
    pub(crate) created_at: u64,
    pub(crate) lines: &'static [Line],
}

#[rustfmt::skip]
pub(crate) static CUSTOMERS: &[Customer] = &[
    Customer { id: 42, name: "Ada Lovelace", email: "ada.lovelace@example.com", city: "London", member_since: "2019-04-02" },
    Customer { id: 43, name: "Grace Hopper", email: "grace.hopper@example.com", city: "Arlington", member_since: "2020-01-15" },
    Customer { id: 44, name: "Kenji Sato", email: "kenji.sato@example.com", city: "Osaka", member_since: "2021-06-30" },
    Customer { id: 45, name: "Amara Okafor", email: "amara.okafor@example.com", city: "Lagos", member_since: "2022-11-08" },
    Customer { id: 46, name: "Lena Fischer", email: "lena.fischer@example.com", city: "Hamburg", member_since: "2023-02-19" },
];

#[rustfmt::skip]
pub(crate) static PRODUCTS: &[Product] = &[
    Product { sku: "TEA-001", name: "Darjeeling First Flush, 100 g", price_cents: 1250, available: 120 },
    Product { sku: "TEA-002", name: "Assam Breakfast, 250 g", price_cents: 890, available: 340 },
    Product { sku: "TEA-003", name: "Sencha Uji, 100 g", price_cents: 1400, available: 75 },
    Product { sku: "TEA-004", name: "Earl Grey Blue Flower, 100 g", price_cents: 950, available: 210 },
    Product { sku: "TEA-005", name: "Silver Needle White Tea, 50 g", price_cents: 2400, available: 18 },
    Product { sku: "TEA-006", name: "Rooibos Vanilla, 100 g", price_cents: 675, available: 0 },
    Product { sku: "TEA-007", name: "Oolong Tie Guan Yin, 100 g", price_cents: 1620, available: 42 },
    Product { sku: "ACC-001", name: "Cast-Iron Teapot, 0.8 l", price_cents: 3900, available: 9 },
];

#[rustfmt::skip]
pub(crate) static ORDERS: &[Order] = &[
    Order { id: 1001, customer_id: 42, status: "shipped", created_at: 1_772_460_311, lines: &[
        Line { sku: "TEA-001", qty: 2, price_cents: 1250 },
        Line { sku: "TEA-004", qty: 1, price_cents: 950 },
    ] },
    Order { id: 1002, customer_id: 43, status: "delivered", created_at: 1_772_700_450, lines: &[
        Line { sku: "TEA-003", qty: 1, price_cents: 1400 },
    ] },
    Order { id: 1003, customer_id: 42, status: "processing", created_at: 1_773_083_524, lines: &[
        Line { sku: "TEA-005", qty: 1, price_cents: 2400 },
        Line { sku: "ACC-001", qty: 1, price_cents: 3900 },
    ] },
    Order { id: 1004, customer_id: 44, status: "shipped", created_at: 1_773_215_925, lines: &[
        Line { sku: "TEA-002", qty: 3, price_cents: 890 },
    ] },
    Order { id: 1005, customer_id: 45, status: "cancelled", created_at: 1_773_419_600, lines: &[
        Line { sku: "TEA-007", qty: 2, price_cents: 1620 },
    ] },
    Order { id: 1006, customer_id: 46, status: "new", created_at: 1_773_480_413, lines: &[
        Line { sku: "TEA-006", qty: 4, price_cents: 675 },
        Line { sku: "TEA-004", qty: 2, price_cents: 950 },
    ] },
];

/// How `created_at` is written: the monolith and the orders service differ
/// here and nowhere else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimeStyle {
    /// `2026-03-14T09:26:53Z` (monolith).
    Seconds,
    /// `2026-03-14T09:26:53.000+00:00` (orders service).
    MillisOffset,
}

impl TimeStyle {
    pub(crate) fn format(self, secs: u64, millis: u32) -> String {
        match self {
            TimeStyle::Seconds => clock::rfc3339_seconds(secs),
            TimeStyle::MillisOffset => clock::rfc3339_millis_offset(secs, millis),
        }
    }
}

/// Cents as a `"12.50"` string.
pub(crate) fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Parse a `"12.50"` / `"12.5"` / `"12"` price into cents; `None` if it is
/// not a plain non-negative decimal with at most two fraction digits.
pub(crate) fn parse_money(s: &str) -> Option<u64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 2 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let frac_cents: u64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<u64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    whole.checked_mul(100)?.checked_add(frac_cents)
}

/// The `"meta"` object: when this answer was generated. Differs on every
/// response on purpose (shadow comparisons must treat it as noise).
pub(crate) fn meta() -> Value {
    json!({"generated_at": clock::now_rfc3339_millis()})
}

/// Attach `"meta"` to a rendered resource.
pub(crate) fn with_meta(mut value: Value) -> Value {
    if let Some(obj) = value.as_object_mut() {
        obj.insert("meta".to_owned(), meta());
    }
    value
}

pub(crate) fn find_customer(id: &str) -> Option<&'static Customer> {
    let id: u64 = id.parse().ok()?;
    CUSTOMERS.iter().find(|c| c.id == id)
}

pub(crate) fn find_product(sku: &str) -> Option<&'static Product> {
    PRODUCTS.iter().find(|p| p.sku == sku)
}

pub(crate) fn find_order(id: &str) -> Option<&'static Order> {
    let id: u64 = id.parse().ok()?;
    ORDERS.iter().find(|o| o.id == id)
}

pub(crate) fn customer_json(c: &Customer) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "email": c.email,
        "city": c.city,
        "member_since": c.member_since,
    })
}

pub(crate) fn inventory_json(p: &Product) -> Value {
    json!({
        "sku": p.sku,
        "name": p.name,
        "available": p.available,
        "price": money(p.price_cents),
    })
}

/// An order without `meta` (as it appears inside the list).
pub(crate) fn order_json(o: &Order, style: TimeStyle) -> Value {
    let lines: Vec<Value> = o
        .lines
        .iter()
        .map(|l| json!({"sku": l.sku, "qty": l.qty, "price": money(l.price_cents)}))
        .collect();
    let total: u64 = o
        .lines
        .iter()
        .map(|l| l.qty.saturating_mul(l.price_cents))
        .fold(0, u64::saturating_add);
    json!({
        "id": o.id,
        "customer_id": o.customer_id,
        "status": o.status,
        "created_at": style.format(o.created_at, 0),
        "currency": "EUR",
        "lines": lines,
        "total": money(total),
    })
}

/// `{"orders": [...], "meta": {...}}`, optionally only one customer's.
pub(crate) fn orders_list_json(customer_id: Option<u64>, style: TimeStyle) -> Value {
    let orders: Vec<Value> = ORDERS
        .iter()
        .filter(|o| customer_id.is_none_or(|c| o.customer_id == c))
        .map(|o| order_json(o, style))
        .collect();
    json!({"orders": orders, "meta": meta()})
}

/// The order created by a `POST /api/orders` body (already known to be a
/// JSON object): `customer_id` and `lines` are echoed as sent; the total is
/// computed from each line's `qty` and its `price` (or the catalog price of
/// its `sku`); lines that allow neither contribute nothing. Never fails.
pub(crate) fn new_order_json(id: u64, body: &Map<String, Value>, style: TimeStyle) -> Value {
    let customer_id = body.get("customer_id").cloned().unwrap_or(Value::Null);
    let lines = body
        .get("lines")
        .cloned()
        .unwrap_or_else(|| Value::Array(Vec::new()));
    let total = lines
        .as_array()
        .map(|ls| ls.iter().map(line_total).fold(0, u64::saturating_add))
        .unwrap_or(0);
    let (secs, millis) = clock::now();
    with_meta(json!({
        "id": id,
        "customer_id": customer_id,
        "status": "new",
        "created_at": style.format(secs, millis),
        "currency": "EUR",
        "lines": lines,
        "total": money(total),
    }))
}

fn line_total(line: &Value) -> u64 {
    let qty = line.get("qty").and_then(Value::as_u64).unwrap_or(0);
    let price = line
        .get("price")
        .and_then(Value::as_str)
        .and_then(parse_money)
        .or_else(|| {
            line.get("sku")
                .and_then(Value::as_str)
                .and_then(find_product)
                .map(|p| p.price_cents)
        })
        .unwrap_or(0);
    qty.saturating_mul(price)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_round_trips() {
        assert_eq!(money(1250), "12.50");
        assert_eq!(money(5), "0.05");
        assert_eq!(parse_money("12.50"), Some(1250));
        assert_eq!(parse_money("12.5"), Some(1250));
        assert_eq!(parse_money("12"), Some(1200));
        for bad in ["", ".5", "1.234", "-1", "1e3", "99999999999999999999"] {
            assert_eq!(parse_money(bad), None, "{bad}");
        }
    }

    #[test]
    fn lookups_reject_garbage() {
        assert!(find_order("1001").is_some());
        assert!(find_order("abc").is_none());
        assert!(find_order("99999999999999999999999").is_none());
        assert!(find_customer("-42").is_none());
        assert!(find_product("TEA-999").is_none());
    }

    #[test]
    fn order_total_and_styles() {
        let o = find_order("1001").expect("order 1001");
        let a = order_json(o, TimeStyle::Seconds);
        let b = order_json(o, TimeStyle::MillisOffset);
        assert_eq!(a["total"], "34.50");
        assert_eq!(a["created_at"], "2026-03-02T14:05:11Z");
        assert_eq!(b["created_at"], "2026-03-02T14:05:11.000+00:00");
        let mut b2 = b.clone();
        b2["created_at"] = a["created_at"].clone();
        assert_eq!(a, b2);
    }

    #[test]
    fn new_order_totals_are_lenient() {
        let body = json!({"customer_id": 42, "lines": [
            {"sku": "TEA-001", "qty": 2},
            {"sku": "X", "qty": 1, "price": "1.05"},
            {"sku": "unknown", "qty": 3},
            {"qty": 18446744073709551615u64, "price": "99999.99"},
            "not an object"
        ]});
        let v = new_order_json(2001, body.as_object().expect("object"), TimeStyle::Seconds);
        assert_eq!(v["id"], 2001);
        assert_eq!(v["lines"], body["lines"]);
        assert_eq!(v["total"], money(u64::MAX));
    }
}

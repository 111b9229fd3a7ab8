//! With the `serde` feature, reports serialize to JSON a CI step can read.
#![cfg(feature = "serde")]

mod common;

use bluegreen::{BlueGreen, Error};
use common::{Tracker, tag_is_good};

#[test]
fn validation_report_json_names_each_gate_with_status_and_times_in_seconds() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .validator(tag_is_good())
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model(2).bad()).unwrap();
    let Err(Error::ValidationFailed(report)) = bg.swap() else {
        panic!("expected a refusal");
    };
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["candidate"], "v2");
    assert_eq!(json["live"], "v1");
    let check = &json["checks"][0];
    assert_eq!(check["name"], "tag_is_good");
    assert_eq!(check["status"], "Failed");
    assert_eq!(check["detail"], "model 2 is marked bad");
    assert!(check["elapsed"].as_f64().unwrap() >= 0.0);
    assert!(json["finished_at"].as_f64().unwrap() > 1.7e9);

    let status = serde_json::to_value(bg.status()).unwrap();
    assert_eq!(status["active"]["version"], "v1");
    assert_eq!(status["standby"]["state"], "Failed");
}

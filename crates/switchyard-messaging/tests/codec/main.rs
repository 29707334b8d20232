//! Property tests of the codec: messages and responses round-trip exactly, also read in two steps
//! (a head, then the message after it); truncated or garbage bytes give a typed error, never a
//! panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Tests fail loudly.

use std::time::Duration;

use proptest::prelude::*;
use switchyard_messaging::codec::{self, DecodeError};
use switchyard_messaging::{DryRun, Message, NodeId, Payload, Response};

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64)
            .prop_map(|bytes| Payload::encode(&bytes).unwrap()),
        ".{0,40}".prop_map(Payload::text),
        (any::<i64>(), ".{0,10}").prop_map(|(n, s)| Payload::json(&(n, s)).unwrap()),
    ]
}

fn node_id() -> impl Strategy<Value = NodeId> {
    ("[a-z]{1,8}", any::<u64>()).prop_map(|(name, incarnation)| NodeId::new(name, incarnation))
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        Just(Response::Ok),
        payload().prop_map(Response::OkWith),
        (proptest::option::of(payload()), any::<i64>())
            .prop_map(|(payload, version)| Response::OkAt { payload, version }),
        (".{0,12}", proptest::option::of(any::<i64>()))
            .prop_map(|(id, version)| Response::Created { id, version }),
        ".{0,12}".prop_map(Response::ServiceUnavailable),
        (".{0,12}", ".{0,12}", any::<u32>(), 0..1_000_000_000_u32).prop_map(
            |(service, message_id, secs, nanos)| Response::ServiceTimeout {
                service,
                message_id,
                timeout: Duration::new(u64::from(secs), nanos),
            }
        ),
        payload().prop_map(Response::ValidationError),
        ".{0,12}".prop_map(Response::MissingId),
        proptest::option::of(".{0,12}").prop_map(Response::Forbidden),
        payload().prop_map(Response::Error),
        ".{0,12}".prop_map(Response::TryAnotherNode),
        proptest::collection::vec((node_id(), ".{0,12}"), 0..4)
            .prop_map(Response::NoNodesAvailable),
    ]
}

prop_compose! {
    fn message()(
        service in ".{0,16}",
        id in ".{0,40}",
        correlation in proptest::option::of(".{0,40}"),
        causation in proptest::option::of(".{0,40}"),
        dry_run in prop_oneof![Just(DryRun::No), Just(DryRun::Yes), Just(DryRun::Verbose)],
        request in proptest::option::of(payload()),
        assigns in proptest::collection::vec(("[a-z]{1,8}", any::<u32>()), 0..4),
        log_fields in proptest::collection::vec(("[a-z]{1,8}", ".{0,12}"), 0..4),
        events in proptest::collection::vec(any::<u64>(), 0..4),
        aggregate_id in proptest::option::of(".{0,12}"),
        response in proptest::option::of(response()),
    ) -> Message {
        let mut msg = Message::new(service).with_id(id).with_dry_run(dry_run);
        if let Some(correlation) = correlation {
            msg = msg.with_correlation_id(correlation);
        }
        if let Some(causation) = causation {
            msg = msg.with_causation_id(causation);
        }
        if let Some(request) = request {
            msg = msg.with_payload(request);
        }
        for (key, value) in assigns {
            msg = msg.assign(key, &value);
        }
        for (key, value) in log_fields {
            msg = msg.with_log_field(key, value);
        }
        for event in events {
            msg = msg.add_event(&event);
        }
        if let Some(aggregate_id) = aggregate_id {
            msg = msg.with_aggregate_id(aggregate_id);
        }
        if let Some(response) = response {
            msg = msg.return_with(response);
        }
        msg
    }
}

proptest! {
    #[test]
    fn a_message_round_trips_exactly(msg in message()) {
        let bytes = msg.to_bytes().unwrap();
        prop_assert_eq!(bytes[0], codec::FORMAT_VERSION);
        prop_assert_eq!(Message::from_bytes(&bytes).unwrap(), msg);
    }

    #[test]
    fn a_response_round_trips_exactly(response in response()) {
        let bytes = codec::encode(&response).unwrap();
        prop_assert_eq!(codec::decode::<Response>(&bytes).unwrap(), response);
    }

    #[test]
    fn a_truncated_message_is_a_typed_error(msg in message(), cut in any::<prop::sample::Index>()) {
        let bytes = msg.to_bytes().unwrap();
        let cut = cut.index(bytes.len());
        let error = Message::from_bytes(&bytes[..cut]).unwrap_err();
        prop_assert!(matches!(error, DecodeError::Empty | DecodeError::Malformed { .. }), "{error:?}");
    }

    /// What a cluster's reader does with a frame: its head first, the message after it where
    /// the message is used.
    #[test]
    fn a_message_behind_a_head_reads_in_two_steps(
        msg in message(),
        route in any::<u64>(),
        name in ".{0,16}",
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = codec::encode(&(route, &name, &msg)).unwrap();
        let (head, tail) = codec::decode_head::<(u64, String)>(&bytes).unwrap();
        prop_assert_eq!(head, (route, name));
        prop_assert_eq!(codec::decode_tail::<Message>(tail).unwrap(), msg);
        let cut = cut.index(tail.len());
        let error = codec::decode_tail::<Message>(&tail[..cut]).unwrap_err();
        prop_assert!(matches!(error, DecodeError::Malformed { .. }), "{error:?}");
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Message::from_bytes(&bytes);
        let _ = codec::decode::<Response>(&bytes);
        let _ = codec::decode_head::<(u64, String)>(&bytes);
        let _ = codec::decode_tail::<Message>(&bytes);
    }

    #[test]
    fn garbage_after_a_valid_version_byte_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut framed = vec![codec::FORMAT_VERSION];
        framed.extend(bytes);
        if let Ok(msg) = Message::from_bytes(&framed) {
            // Whatever decodes must encode back to the same bytes' meaning.
            prop_assert_eq!(Message::from_bytes(&msg.to_bytes().unwrap()).unwrap(), msg);
        }
    }

    #[test]
    fn a_corrupted_byte_never_panics(msg in message(), at in any::<prop::sample::Index>(), value in any::<u8>()) {
        let mut bytes = msg.to_bytes().unwrap();
        let at = at.index(bytes.len());
        bytes[at] = value;
        let _ = Message::from_bytes(&bytes);
    }
}

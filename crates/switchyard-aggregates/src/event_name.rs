//! The stable name of an event: the serde name of its enum variant, or of its type.
//!
//! A [`Serializer`] that serializes nothing: it stops at the first name serde hands it. Enum
//! variants (externally tagged, serde's default) give their variant name; structs, unit structs,
//! tuple structs and newtype structs give their type name; an `Option` gives its content's name.
//! serde's names are `&'static str` from the derive (with `#[serde(rename)]` applied), so naming an
//! event allocates nothing and reads no field.
//!
//! Internally and adjacently tagged enums (`#[serde(tag = "..")]`, with or without `content`)
//! and untagged ones would give every variant the enum's name (or none), but they cannot be
//! events at all: the stores' binary codec cannot read them back (they need a self-describing
//! format), and the test support's scenarios fail on them.

use serde::Serialize;
use serde::ser::{self, Impossible, Serializer};

/// The serde name of `value`: its variant name for an enum, its type name for a named struct;
/// `None` for anything serde does not name (numbers, strings, tuples, sequences, maps, unit) or
/// whose `Serialize` fails before naming itself.
pub(crate) fn serde_name<T: Serialize + ?Sized>(value: &T) -> Option<&'static str> {
    value.serialize(NameOnly).ok()
}

/// Why no name was found. Never shown: the caller falls back to another name.
#[derive(Debug)]
pub(crate) struct Unnamed;

impl std::fmt::Display for Unnamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the value has no serde name")
    }
}

impl std::error::Error for Unnamed {}

impl ser::Error for Unnamed {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Self
    }
}

/// Answers the first name it is given; refuses every unnamed shape.
struct NameOnly;

/// Swallows the fields of a named compound value and answers its name at the end.
struct Named(&'static str);

macro_rules! unnamed {
    ($($method:ident($($ty:ty),*);)*) => {
        $(fn $method(self, $(_: $ty),*) -> Result<Self::Ok, Self::Error> {
            Err(Unnamed)
        })*
    };
}

impl Serializer for NameOnly {
    type Ok = &'static str;
    type Error = Unnamed;
    type SerializeSeq = Impossible<&'static str, Unnamed>;
    type SerializeTuple = Impossible<&'static str, Unnamed>;
    type SerializeTupleStruct = Named;
    type SerializeTupleVariant = Named;
    type SerializeMap = Impossible<&'static str, Unnamed>;
    type SerializeStruct = Named;
    type SerializeStructVariant = Named;

    unnamed! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_i128(i128);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_u128(u128);
        serialize_f32(f32);
        serialize_f64(f64);
        serialize_char(char);
        serialize_str(&str);
        serialize_bytes(&[u8]);
        serialize_none();
        serialize_unit();
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Self::Ok, Self::Error> {
        value.serialize(self)
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result<Self::Ok, Self::Error> {
        Ok(name)
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Self::Ok, Self::Error> {
        Ok(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _value: &T,
    ) -> Result<Self::Ok, Self::Error> {
        Ok(name)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _value: &T,
    ) -> Result<Self::Ok, Self::Error> {
        Ok(variant)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
        Err(Unnamed)
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Self::Error> {
        Err(Unnamed)
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Self::Error> {
        Ok(Named(name))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Self::Error> {
        Ok(Named(variant))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
        Err(Unnamed)
    }

    fn serialize_struct(
        self,
        name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Self::Error> {
        Ok(Named(name))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Self::Error> {
        Ok(Named(variant))
    }

    fn is_human_readable(&self) -> bool {
        // Events are stored in the binary format: name them as that format sees them.
        false
    }
}

/// The fields are not serialized: only the name, answered by `end`.
macro_rules! named_compound {
    ($($trait:ident::$field:ident($($key:ty),*);)*) => {
        $(impl ser::$trait for Named {
            type Ok = &'static str;
            type Error = Unnamed;

            fn $field<T: Serialize + ?Sized>(&mut self, $(_: $key,)* _value: &T) -> Result<(), Unnamed> {
                Ok(())
            }

            fn end(self) -> Result<&'static str, Unnamed> {
                Ok(self.0)
            }
        })*
    };
}

named_compound! {
    SerializeTupleStruct::serialize_field();
    SerializeTupleVariant::serialize_field();
    SerializeStruct::serialize_field(&'static str);
    SerializeStructVariant::serialize_field(&'static str);
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::serde_name;

    #[derive(Serialize)]
    enum Event {
        Opened,
        Deposited(u64),
        Moved(u64, u64),
        Renamed {
            name: String,
        },
        #[serde(rename = "closed_for_good")]
        Closed,
    }

    #[derive(Serialize)]
    struct Deposited {
        amount: u64,
    }

    #[derive(Serialize)]
    struct Marker;

    #[derive(Serialize)]
    struct Amount(u64);

    #[derive(Serialize)]
    struct Pair(u64, u64);

    fn check<T: Serialize>(value: &T, expected: Option<&str>) {
        assert_eq!(serde_name(value), expected);
    }

    #[test]
    fn every_variant_shape_gives_its_variant_name() {
        check(&Event::Opened, Some("Opened"));
        check(&Event::Deposited(1), Some("Deposited"));
        check(&Event::Moved(1, 2), Some("Moved"));
        check(&Event::Renamed { name: "x".into() }, Some("Renamed"));
        check(&Event::Closed, Some("closed_for_good"));
    }

    #[test]
    fn named_structs_give_their_type_name() {
        check(&Deposited { amount: 1 }, Some("Deposited"));
        check(&Marker, Some("Marker"));
        check(&Amount(1), Some("Amount"));
        check(&Pair(1, 2), Some("Pair"));
        check(&Some(Event::Opened), Some("Opened"));
    }

    #[derive(Serialize, serde::Deserialize)]
    #[serde(tag = "type")]
    enum Internal {
        Opened,
    }

    #[derive(Serialize, serde::Deserialize)]
    #[serde(tag = "type", content = "data")]
    enum Adjacent {
        Opened,
    }

    #[derive(Serialize, serde::Deserialize)]
    #[serde(untagged)]
    enum Untagged {
        Opened,
    }

    #[test]
    fn tagged_and_untagged_enums_cannot_be_events() {
        fn undecodable<T: Serialize + serde::de::DeserializeOwned>(value: &T) -> bool {
            let bytes = switchyard_messaging::codec::encode(value).unwrap();
            switchyard_messaging::codec::decode::<T>(&bytes).is_err()
        }
        // Named after the enum, not the variant; but the stores could not read them back.
        check(&Internal::Opened, Some("Internal"));
        check(&Adjacent::Opened, Some("Adjacent"));
        assert!(undecodable(&Internal::Opened));
        assert!(undecodable(&Adjacent::Opened));
        assert!(undecodable(&Untagged::Opened));
    }

    #[test]
    fn unnamed_values_give_none() {
        check(&1_u64, None);
        check(&"text", None);
        check(&(1_u8, 2_u8), None);
        check(&vec![1_u8], None);
        check(&(), None);
        check(&None::<Event>, None);
    }
}

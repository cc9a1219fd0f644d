//! The pipeline's stages as the template names them, and a map from each stage to a value in
//! run order.
//!
//! [`Stage`](super::Stage) is what `nton-job` can run (procure, process, egress); a pipeline
//! stage is one Batch job the state machine submits, named by its key in the state's `jobs`
//! object (`ResultPath: $.jobs.<name>`). The two differ on purpose: a template may run the same
//! worker command twice under two names, or add a fourth stage, and nothing here needs to change
//! (a closed enum would have to).

use std::fmt;
use std::ops::Index;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Stage;

/// The name of one pipeline stage: the key of its job in the state machine's `jobs` object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StageName(String);

impl StageName {
    pub fn new(name: impl Into<String>) -> StageName {
        StageName(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: column layouts (`{stage:<8}`) must apply.
        f.pad(&self.0)
    }
}

impl From<Stage> for StageName {
    fn from(stage: Stage) -> StageName {
        StageName(stage.as_str().to_string())
    }
}

impl From<&str> for StageName {
    fn from(name: &str) -> StageName {
        StageName(name.to_string())
    }
}

impl PartialEq<str> for StageName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// One value per pipeline stage, in run order (the first stage first). Serialized as a JSON
/// object whose keys come in that order; read back in the order the object gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageMap<T> {
    entries: Vec<(StageName, T)>,
}

impl<T> Default for StageMap<T> {
    fn default() -> Self {
        StageMap { entries: Vec::new() }
    }
}

impl<T> StageMap<T> {
    pub fn new() -> StageMap<T> {
        StageMap::default()
    }

    /// Sets a stage's value: in place when the stage is known, else as the last stage.
    /// Returns the value it replaced.
    pub fn insert(&mut self, stage: StageName, value: T) -> Option<T> {
        match self.entries.iter_mut().find(|(name, _)| *name == stage) {
            Some((_, old)) => Some(std::mem::replace(old, value)),
            None => {
                self.entries.push((stage, value));
                None
            }
        }
    }

    pub fn get(&self, stage: &StageName) -> Option<&T> {
        self.entries.iter().find(|(name, _)| name == stage).map(|(_, value)| value)
    }

    pub fn get_mut(&mut self, stage: &StageName) -> Option<&mut T> {
        self.entries.iter_mut().find(|(name, _)| name == stage).map(|(_, value)| value)
    }

    /// The stage's place in the run, 0 for the first.
    pub fn position(&self, stage: &StageName) -> Option<usize> {
        self.entries.iter().position(|(name, _)| name == stage)
    }

    /// The stage run just before this one.
    pub fn previous(&self, stage: &StageName) -> Option<&StageName> {
        let position = self.position(stage)?;
        position.checked_sub(1).map(|before| &self.entries[before].0)
    }

    /// The stages, in run order.
    pub fn stages(&self) -> impl Iterator<Item = &StageName> {
        self.entries.iter().map(|(name, _)| name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&StageName, &T)> {
        self.entries.iter().map(|(name, value)| (name, value))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&StageName, &mut T)> {
        self.entries.iter_mut().map(|(name, value)| (&*name, value))
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|(_, value)| value)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The same stages, in the same order, with each value mapped.
    pub fn map<U>(&self, mut f: impl FnMut(&StageName, &T) -> U) -> StageMap<U> {
        StageMap {
            entries: self
                .entries
                .iter()
                .map(|(name, value)| (name.clone(), f(name, value)))
                .collect(),
        }
    }
}

impl<T> Index<&StageName> for StageMap<T> {
    type Output = T;

    /// Panics on a stage the map does not hold: only for names taken from the map itself.
    fn index(&self, stage: &StageName) -> &T {
        self.get(stage).unwrap_or_else(|| panic!("no stage {stage} in this map"))
    }
}

impl<T> FromIterator<(StageName, T)> for StageMap<T> {
    fn from_iter<I: IntoIterator<Item = (StageName, T)>>(iter: I) -> Self {
        let mut map = StageMap::new();
        for (stage, value) in iter {
            map.insert(stage, value);
        }
        map
    }
}

impl<T> IntoIterator for StageMap<T> {
    type Item = (StageName, T);
    type IntoIter = std::vec::IntoIter<(StageName, T)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

// By hand rather than through a map type: serde's maps (BTreeMap, serde_json's Map without
// `preserve_order`) sort their keys, and the order of the stages is the point of this type.
impl<T: Serialize> Serialize for StageMap<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (name, value) in &self.entries {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for StageMap<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StageMapVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for StageMapVisitor<T> {
            type Value = StageMap<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object with one entry per stage")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut map = StageMap::new();
                while let Some((name, value)) = access.next_entry::<StageName, T>()? {
                    if map.get(&name).is_some() {
                        return Err(serde::de::Error::custom(format!("stage {name} given twice")));
                    }
                    map.entries.push((name, value));
                }
                Ok(map)
            }
        }

        deserializer.deserialize_map(StageMapVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_keeps_run_order_through_json() {
        let map: StageMap<u32> = [("procure", 1), ("process", 2), ("check", 3), ("egress", 4)]
            .into_iter()
            .map(|(name, n)| (StageName::from(name), n))
            .collect();
        let text = serde_json::to_string(&map).unwrap();
        // Not sorted by name: "check" stays third.
        assert_eq!(text, r#"{"procure":1,"process":2,"check":3,"egress":4}"#);
        let back: StageMap<u32> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, map);
        assert_eq!(back.previous(&"check".into()), Some(&StageName::from("process")));
        assert_eq!(back.previous(&"procure".into()), None);
        assert_eq!(back[&"egress".into()], 4);
        assert_eq!(back.position(&"egress".into()), Some(3));
    }

    #[test]
    fn a_stage_given_twice_is_refused_and_insert_replaces_in_place() {
        let error = serde_json::from_str::<StageMap<u32>>(r#"{"a":1,"a":2}"#).unwrap_err();
        assert!(error.to_string().contains("stage a given twice"), "{error}");
        let mut map: StageMap<u32> = StageMap::new();
        map.insert("a".into(), 1);
        map.insert("b".into(), 2);
        assert_eq!(map.insert("a".into(), 3), Some(1));
        assert_eq!(map.stages().map(StageName::as_str).collect::<Vec<_>>(), ["a", "b"]);
    }
}

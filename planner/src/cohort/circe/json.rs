//! Reading Circe JSON with the JSON path of every value, so each error names where it is.
//! ATLAS writes PascalCase keys (`PrimaryCriteria`, `CodesetId`) and camelCase inside concept
//! sets (`includeDescendants`); keys are matched without regard to case, as Circe's own reader
//! does, and `null` counts as absent.

use serde_json::Value;

use crate::cohort::CohortError;

#[derive(Clone)]
pub struct Node<'a> {
    pub value: &'a Value,
    pub path: String,
}

impl<'a> Node<'a> {
    pub fn root(value: &'a Value) -> Self {
        Node {
            value,
            path: "$".into(),
        }
    }

    /// The member `key` (any case), unless absent or null.
    pub fn get(&self, key: &str) -> Option<Node<'a>> {
        let obj = self.value.as_object()?;
        obj.iter()
            .find(|(k, v)| k.eq_ignore_ascii_case(key) && !v.is_null())
            .map(|(k, v)| Node {
                value: v,
                path: format!("{}.{k}", self.path),
            })
    }

    /// The members of an object that are not null.
    pub fn entries(&self) -> Result<Vec<(&'a str, Node<'a>)>, CohortError> {
        let obj = self
            .value
            .as_object()
            .ok_or_else(|| self.invalid("an object is needed"))?;
        Ok(obj
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                (
                    k.as_str(),
                    Node {
                        value: v,
                        path: format!("{}.{k}", self.path),
                    },
                )
            })
            .collect())
    }

    /// The elements of an array (absent or null: none).
    pub fn items(&self) -> Result<Vec<Node<'a>>, CohortError> {
        match self.value {
            Value::Null => Ok(vec![]),
            Value::Array(a) => Ok(a
                .iter()
                .enumerate()
                .map(|(i, v)| Node {
                    value: v,
                    path: format!("{}[{i}]", self.path),
                })
                .collect()),
            _ => Err(self.invalid("an array is needed")),
        }
    }

    /// The elements of member `key`, or none.
    pub fn list(&self, key: &str) -> Result<Vec<Node<'a>>, CohortError> {
        self.get(key).map_or(Ok(vec![]), |n| n.items())
    }

    pub fn i64(&self) -> Result<i64, CohortError> {
        match self.value {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .ok_or_else(|| self.invalid("an integer is needed")),
            Value::String(s) => s
                .trim()
                .parse()
                .map_err(|_| self.invalid("an integer is needed")),
            _ => Err(self.invalid("an integer is needed")),
        }
    }

    pub fn f64(&self) -> Result<f64, CohortError> {
        match self.value {
            Value::Number(n) => n.as_f64().ok_or_else(|| self.invalid("a number is needed")),
            Value::String(s) => s
                .trim()
                .parse()
                .map_err(|_| self.invalid("a number is needed")),
            _ => Err(self.invalid("a number is needed")),
        }
    }

    pub fn bool(&self) -> Result<bool, CohortError> {
        self.value
            .as_bool()
            .ok_or_else(|| self.invalid("true or false is needed"))
    }

    pub fn str(&self) -> Result<&'a str, CohortError> {
        self.value
            .as_str()
            .ok_or_else(|| self.invalid("a string is needed"))
    }

    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>, CohortError> {
        self.get(key).map(|n| n.i64()).transpose()
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, CohortError> {
        self.get(key).map(|n| n.bool()).transpose()
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, CohortError> {
        self.get(key).map(|n| n.str()).transpose()
    }

    pub fn flag(&self, key: &str) -> Result<bool, CohortError> {
        Ok(self.opt_bool(key)?.unwrap_or(false))
    }

    pub fn invalid(&self, what: &str) -> CohortError {
        CohortError::Invalid(format!("{}: {what}", self.path))
    }

    pub fn unsupported(&self, what: &str) -> CohortError {
        CohortError::Unsupported {
            path: self.path.clone(),
            what: what.to_string(),
        }
    }
}

/// Circe's `CriteriaGroup.isEmpty()`: no criteria, no demographic criteria, no groups.
pub(super) fn is_empty_group(g: &Node<'_>) -> Result<bool, CohortError> {
    Ok(g.list("CriteriaList")?.is_empty()
        && g.list("DemographicCriteriaList")?.is_empty()
        && g.list("Groups")?.is_empty())
}

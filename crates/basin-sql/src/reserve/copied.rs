//! The wrapper that reserves a projection's constant answer before it is copied to every row.

use std::any::Any;
use std::sync::Arc;

use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// The name [`Copied`] goes by in errors.
pub(super) const COPIED: &str = "a long constant";

/// Its argument as it is: the wrapper that reserves a projection's constant answer.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct Copied {
    signature: Signature,
}

impl Copied {
    pub(super) fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Copied {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        COPIED
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        Ok(args[0].schema_name().to_string())
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(Arc::clone(&args.arg_fields[0]))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        args.args
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Internal(format!("`{COPIED}` takes one argument")))
    }
}

//! Strata's own execution nodes on the wire. Only the registered views' row filter travels;
//! the other Strata nodes stay on the coordinator (see `ship`).

use std::sync::Arc;

use datafusion::common::{Result, internal_err};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::{PhysicalExprNode, proto_error};
use prost::Message;
use strata_planner::registered::KeepExec;

#[derive(Debug)]
pub(crate) struct StrataCodec;

#[derive(Clone, PartialEq, prost::Message)]
struct KeepProto {
    #[prost(message, optional, tag = "1")]
    predicate: Option<PhysicalExprNode>,
    #[prost(uint64, repeated, tag = "2")]
    columns: Vec<u64>,
}

impl PhysicalExtensionCodec for StrataCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = inputs else {
            return internal_err!("RegisteredRowsExec has one input, got {}", inputs.len());
        };
        let proto =
            KeepProto::decode(buf).map_err(|e| proto_error(format!("RegisteredRowsExec: {e}")))?;
        let Some(predicate) = &proto.predicate else {
            return internal_err!("RegisteredRowsExec without its predicate");
        };
        let predicate = proto_converter.proto_to_physical_expr(
            predicate,
            &input.schema(),
            &PhysicalPlanDecodeContext::new(ctx, self),
        )?;
        let columns = proto.columns.iter().map(|&c| c as usize).collect();
        Ok(Arc::new(KeepExec::from_parts(
            input.clone(),
            predicate,
            columns,
        )?))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        encode(node, buf, proto_converter, self)
    }
}

/// `node`'s bytes, its expressions' functions encoded by `functions` (the shipping check passes
/// itself, so that a function in a predicate is checked like any other).
pub(crate) fn encode(
    node: Arc<dyn ExecutionPlan>,
    buf: &mut Vec<u8>,
    proto_converter: &dyn PhysicalProtoConverterExtension,
    functions: &dyn PhysicalExtensionCodec,
) -> Result<()> {
    let Some(keep) = node.downcast_ref::<KeepExec>() else {
        return internal_err!("{} is not shipped to workers", node.name());
    };
    let (_, predicate, columns) = keep.parts();
    let proto = KeepProto {
        predicate: Some(proto_converter.physical_expr_to_proto(predicate, functions)?),
        columns: columns.iter().map(|&c| c as u64).collect(),
    };
    proto
        .encode(buf)
        .map_err(|e| proto_error(format!("RegisteredRowsExec: {e}")))
}

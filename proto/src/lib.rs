//! Strata's gRPC API (besides Flight SQL): generated from `strata/v1/*.proto`.

pub mod strata {
    pub mod v1 {
        tonic::include_proto!("strata.v1");
    }
}

/// Descriptors of every Strata service, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/strata_descriptor.bin"));

//! The skeletons libbpf-cargo generated in build.rs.

pub mod struct_ops {
    include!(concat!(env!("OUT_DIR"), "/struct_ops.skel.rs"));
}

pub mod rejected {
    include!(concat!(env!("OUT_DIR"), "/rejected.skel.rs"));
}

pub mod ctx_write {
    include!(concat!(env!("OUT_DIR"), "/ctx_write.skel.rs"));
}

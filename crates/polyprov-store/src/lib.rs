//! What polyprov keeps: the inventory (devices, profiles, site defaults) and the files phones
//! upload, each device in its own namespace outside the served boot root.

pub mod backup;
pub mod inventory;
pub mod upload_store;
pub mod uploads;

pub use inventory::{
    Assignment, Change, Device, DeviceFilter, DeviceLogin, DeviceState, Engine, Inventory,
    InventoryChange, InventoryError, LoginCheck, PageAfter, Profile, Sighting,
};
pub use upload_store::UploadStore;
pub use uploads::{QuarantineSet, UploadError, UploadInfo, UploadLimits, Uploads};

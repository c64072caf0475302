//! Several chat-app servers sharing rooms through the NATS layer: real sockets, real NATS.

mod support;

use std::cell::RefCell;

use support::chat::*;
use support::nats::{NatsProcess, nats};
use support::redis::unique_prefix;

#[tokio::test]
async fn members_on_two_processes_chat_as_one_room_over_nats() {
    let Some(nats) = nats().await else { return };
    let prefix = unique_prefix("nats-two-servers");
    let one = ChatNode::nats(&nats.url, &prefix).await;
    let two = ChatNode::nats(&nats.url, &prefix).await;
    two_processes_chat_as_one_room(&one, &two).await;
}

#[tokio::test]
async fn a_burst_of_500_over_nats_arrives_complete_and_in_order_per_sender() {
    let Some(nats) = nats().await else { return };
    let prefix = unique_prefix("nats-burst");
    let one = ChatNode::nats(&nats.url, &prefix).await;
    let two = ChatNode::nats(&nats.url, &prefix).await;
    a_burst_of_500_arrives_complete_and_in_order(&one, &two).await;
}

#[tokio::test]
async fn a_nats_restart_is_survived_and_announced() {
    let Some(server) = NatsProcess::start() else {
        return;
    };
    let prefix = unique_prefix("nats-restart");
    let one = ChatNode::nats(&server.url(), &prefix).await;
    let two = ChatNode::nats(&server.url(), &prefix).await;
    let server = RefCell::new(server);
    an_outage_is_survived_and_announced(
        &one,
        &two,
        || server.borrow_mut().stop(),
        || server.borrow_mut().restart(),
    )
    .await;
}

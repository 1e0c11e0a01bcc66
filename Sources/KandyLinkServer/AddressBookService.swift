import Foundation
import KandyLinkProtocol
import Logging

/// Each user's personal address book (Kandy.js's `contacts`): contacts keyed by the id the
/// client chooses, bounded in number and size, kept in the store so every node sees the same.
final class AddressBookService: Sendable {
    private let store: any PlatformStore
    private let limit: Int
    private let logger: Logger

    init(store: any PlatformStore, limit: Int, logger: Logger) {
        self.store = store
        self.limit = limit
        self.logger = logger
    }

    func contacts(of owner: String) async throws(PlatformError) -> [Contact] {
        try await storing("The address book could not be read.", logger: logger) { try await store.contacts(of: owner) }
    }

    func contact(_ id: String, of owner: String) async throws(PlatformError) -> Contact {
        let found = try await storing("The address book could not be read.", logger: logger) {
            try await store.contact(id, of: owner)
        }
        guard let found else { throw Self.noContact(id) }
        return found
    }

    /// `POST …/addressbook/contacts/`: the request's one entry.
    func add(_ request: AddressBookRequest, by owner: String) async throws(PlatformError) -> Contact {
        let contact = try Self.entry(of: request, path: nil)
        let outcome = try await storing("The contact could not be stored.", logger: logger) {
            try await store.insertContact(contact, of: owner, limit: limit)
        }
        switch outcome {
        case .inserted: return contact
        case .exists:
            throw PlatformError(
                .contactExists, "The address book has a contact \(contact.contactId) already; update it with PUT.")
        case .full: throw PlatformError(.addressBookFull, "The address book holds its limit of \(limit) contacts.")
        }
    }

    /// `PUT …/addressbook/contacts/{id}`: replaces the contact with the request's entry.
    func update(_ id: String, with request: AddressBookRequest, by owner: String) async throws(PlatformError)
        -> Contact
    {
        let contact = try Self.entry(of: request, path: id)
        let replaced = try await storing("The contact could not be stored.", logger: logger) {
            try await store.replaceContact(contact, of: owner)
        }
        guard replaced else { throw Self.noContact(id) }
        return contact
    }

    func remove(_ id: String, by owner: String) async throws(PlatformError) {
        let removed = try await storing("The contact could not be removed.", logger: logger) {
            try await store.deleteContact(id, of: owner)
        }
        guard removed else { throw Self.noContact(id) }
    }

    /// The one entry of an add or update, checked: an update's entry names the contact of its path.
    static func entry(of request: AddressBookRequest, path id: String?) throws(PlatformError) -> Contact {
        guard request.addressBookEntries.count == 1, let contact = request.addressBookEntries.first else {
            throw PlatformError(.invalidField, "addressBookRequest.addressBookEntries holds exactly one contact.")
        }
        guard Contact.isAcceptableID(contact.contactId) else {
            throw PlatformError(
                .invalidField,
                "nickname (the contact id) must be 1–\(Contact.maxContactIDBytes) bytes without '/', '\\' or control characters."
            )
        }
        if let id, contact.contactId != id {
            throw PlatformError(.invalidField, "The entry's nickname \(contact.contactId) is not the path's \(id).")
        }
        for (name, value) in contact.textFields {
            guard let value else { continue }
            guard value.utf8.count <= Contact.maxFieldBytes else {
                throw PlatformError(.invalidField, "\(name) is at most \(Contact.maxFieldBytes) bytes.")
            }
        }
        return contact.withoutEmptyFields
    }

    private static func noContact(_ id: String) -> PlatformError {
        PlatformError(.contactNotFound, "The address book has no contact \(id).")
    }
}
